/**
 * agentk's end of flux_git_push against a kas made from the protocol alone (memory transports):
 * subscriptions go up at every open and change, pushes come down, a stream without heartbeats is
 * presumed stalled and reopened, hostile data resets the stream and it is reopened.
 */
import { Registry } from 'prom-client';
import { decodeFluxSubscribe, encodeFluxMessage, encodeFluxReplyHead, FluxMessageReader, FLUX_GIT_PUSH_STREAM } from '../../protocol/flux.js';
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import type { TunnelStream } from '../../protocol/stream.js';
import { createLogger } from '../../shared/logger.js';
import { waitFor } from '../../../test/support/wait.js';
import { KasStreams } from '../tunnel/kas-streams.js';
import { FluxAgentMetrics } from './metrics.js';
import { FluxPushClient } from './push-stream.js';

const silent = createLogger({ name: 'test', level: 'silent' });

interface KasStream {
  stream: TunnelStream;
  subscriptions: string[][];
}

describe('FluxPushClient', () => {
  let kasSide: Session;
  let agentSide: Session;
  let kas: KasStreams;
  let client: FluxPushClient;
  let metrics: FluxAgentMetrics;
  const streams: KasStream[] = [];
  const pushes: string[] = [];
  /** How kas answers the next stream: with heartbeats, silent (stalled), or with garbage. */
  let behaviour: 'normal' | 'silent' | 'garbage' = 'normal';
  const timers: NodeJS.Timeout[] = [];

  beforeEach(async () => {
    const [a, b] = createMemoryTransportPair();
    kasSide = new Session(a, { role: 'server', welcome: { features: [FLUX_GIT_PUSH_STREAM] } });
    agentSide = new Session(b, { role: 'client', hello: {} });
    kasSide.on('stream', (stream: TunnelStream) => {
      expect(stream.peerHead?.t).toBe(FLUX_GIT_PUSH_STREAM);
      const entry: KasStream = { stream, subscriptions: [] };
      streams.push(entry);
      const reader = new FluxMessageReader();
      stream.on('data', (chunk: Buffer) => {
        for (const v of reader.push(chunk)) entry.subscriptions.push(decodeFluxSubscribe(v).projects);
      });
      stream.reply(encodeFluxReplyHead({ heartbeatMs: 100 }));
      if (behaviour === 'garbage') {
        stream.write(Buffer.from([0, 0, 0, 2, 0x7b, 0x7d]));
        // One bad stream only: agentk reopens within milliseconds, before a test's poll could see
        // the first stream alone if every stream were bad.
        behaviour = 'normal';
      }
      if (behaviour === 'normal') timers.push(setInterval(() => !stream.destroyed && stream.write(encodeFluxMessage({ type: 'heartbeat' })), 50));
    });
    const [, welcome] = await Promise.all([kasSide.ready, agentSide.ready]);
    kas = new KasStreams();
    kas.added(agentSide, welcome);
    metrics = new FluxAgentMetrics(new Registry());
    client = new FluxPushClient({ kas, logger: silent, metrics, onPush: (p) => pushes.push(p), backoff: { baseMs: 10, capMs: 20 } });
  });

  afterEach(async () => {
    await client.stop();
    for (const t of timers.splice(0)) clearInterval(t);
    kas.stop();
    agentSide.close();
    kasSide.close();
    streams.splice(0);
    pushes.splice(0);
    behaviour = 'normal';
  });

  test('subscribes at open and on every change; pushes reach onPush', async () => {
    client.setProjects(['acme/b', 'acme/a']);
    client.start();
    await waitFor(() => streams[0]?.subscriptions.length === 1, 'the first subscription');
    expect(streams[0]!.subscriptions[0]).toEqual(['acme/a', 'acme/b']);
    client.setProjects(['acme/a', 'acme/b']); // the same set: nothing sent
    client.setProjects(['acme/c']);
    await waitFor(() => streams[0]!.subscriptions.length === 2, 'the changed subscription');
    expect(streams[0]!.subscriptions[1]).toEqual(['acme/c']);
    streams[0]!.stream.write(encodeFluxMessage({ type: 'push', project: 'acme/c' }));
    await waitFor(() => pushes.length === 1, 'the push');
    expect(pushes).toEqual(['acme/c']);
    expect(streams).toHaveLength(1);
  });

  test('a stream on which no heartbeat arrives is reset and reopened, and subscribes again', async () => {
    behaviour = 'silent';
    client.setProjects(['acme/a']);
    client.start();
    await waitFor(() => streams.length === 1, 'the first stream');
    behaviour = 'normal';
    // 3 x 100 ms without anything: stalled.
    await waitFor(() => streams.length === 2 && streams[1]!.subscriptions.length === 1, 'a second stream after the stall', 10_000);
    expect(streams[0]!.stream.destroyed).toBe(true);
    expect(streams[1]!.subscriptions[0]).toEqual(['acme/a']);
    expect((await metrics.streamRestarts.get()).values.find((v) => v.labels.reason === 'stalled')?.value).toBe(1);
    streams[1]!.stream.write(encodeFluxMessage({ type: 'push', project: 'acme/a' }));
    await waitFor(() => pushes.length === 1, 'a push on the new stream');
  });

  test('kas closing the stream and kas sending garbage both lead to a new stream', async () => {
    behaviour = 'garbage';
    client.start();
    // The reopened stream may already be there when this first looks (the backoff is 10-20 ms).
    await waitFor(() => streams.length >= 1, 'the first stream');
    await waitFor(() => streams.length === 2, 'a new stream after the garbage', 10_000);
    expect((await metrics.streamRestarts.get()).values.find((v) => v.labels.reason === 'error')?.value).toBe(1);
    streams[1]!.stream.end();
    await waitFor(() => streams.length === 3, 'a new stream after kas ended the last', 10_000);
  });
});
