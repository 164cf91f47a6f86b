/**
 * kas's end of flux_git_push with an agentk made from the protocol alone (memory transports):
 * GitLab's access check decides what is accepted, pushes are forwarded by id and by path,
 * heartbeats flow, hostile input resets the stream and the session goes on.
 */
import { Registry } from 'prom-client';
import { decodeFluxDownMessage, decodeFluxReplyHead, encodeFluxMessage, FluxMessageReader, FLUX_GIT_PUSH_STREAM, type FluxDownMessage } from '../../protocol/flux.js';
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import { createLogger } from '../../shared/logger.js';
import { errorOf } from '../../../test/support/streams.js';
import { waitFor } from '../../../test/support/wait.js';
import type { AgentConnection } from '../tunnel/agent-registry.js';
import { FluxMetrics } from './metrics.js';
import type { ProjectAccess, ProjectAccessChecker } from './project-access.js';
import { FluxPushHub, MAX_FLUX_STREAMS_PER_AGENT } from './push-hub.js';

const silent = createLogger({ name: 'test', level: 'silent' });

class StubAccess implements ProjectAccessChecker {
  readonly answers = new Map<string, ProjectAccess>();
  readonly asked: Array<{ token: string; path: string }> = [];
  check(token: string, path: string): Promise<ProjectAccess> {
    this.asked.push({ token, path });
    return Promise.resolve(this.answers.get(path) ?? { ok: false, reason: 'GitLab refused access to the project (404)', definite: true });
  }
}

describe('FluxPushHub', () => {
  let kasSide: Session;
  let agentSide: Session;
  let hub: FluxPushHub;
  let access: StubAccess;
  let connection: AgentConnection;

  async function setUp(o: { access: StubAccess | null; maxProjects?: number }) {
    const [a, b] = createMemoryTransportPair();
    kasSide = new Session(a, { role: 'server' });
    agentSide = new Session(b, { role: 'client', hello: {} });
    await Promise.all([kasSide.ready, agentSide.ready]);
    connection = { connectionId: 'c1', identity: { agentId: 1, agentName: 'prod', projectId: 5 }, session: kasSide, connectedAt: new Date(), meta: { version: '', commit: '', podName: '', podNamespace: '', kubernetesVersion: '', features: [] }, agentToken: () => 'glagent-secret' };
    hub = new FluxPushHub({ access: o.access, heartbeatMs: 100, maxProjects: o.maxProjects ?? 10, recheckMs: 3_600_000, retryMs: 3_600_000, metrics: new FluxMetrics(new Registry()), logger: silent });
    kasSide.on('stream', (s: TunnelStream) => hub.serve(s, connection, silent));
  }

  async function open(): Promise<{ stream: TunnelStream; messages: FluxDownMessage[] }> {
    const stream = agentSide.openStream({ t: FLUX_GIT_PUSH_STREAM });
    const head = decodeFluxReplyHead(await replyOf(stream));
    expect(head.heartbeatMs).toBe(100);
    const messages: FluxDownMessage[] = [];
    const reader = new FluxMessageReader();
    stream.on('data', (c: Buffer) => {
      for (const v of reader.push(c)) messages.push(decodeFluxDownMessage(v));
    });
    return { stream, messages };
  }

  afterEach(() => {
    hub.stop();
    agentSide.close();
    kasSide.close();
  });

  test('GitLab mode: accepted projects get their pushes (by id or by path), refused ones are reported and get none', async () => {
    access = new StubAccess();
    access.answers.set('acme/app', { ok: true, projectId: 7 });
    await setUp({ access });
    const { stream, messages } = await open();
    stream.write(encodeFluxMessage({ type: 'subscribe', projects: ['acme/app', 'acme/private'] }));
    await waitFor(() => messages.some((m) => m.type === 'subscribed'), 'the answer');
    expect(messages.find((m) => m.type === 'subscribed')).toEqual({ type: 'subscribed', accepted: ['acme/app'], refused: [{ project: 'acme/private', reason: expect.stringContaining('404') }] });
    expect(access.asked.every((a) => a.token === 'glagent-secret')).toBe(true);

    hub.push({ projectId: 7, fullPath: null });
    hub.push({ projectId: 999, fullPath: 'ACME/App' });
    hub.push({ projectId: 9, fullPath: 'acme/private' });
    hub.push({ projectId: 8, fullPath: 'other/project' });
    await waitFor(() => messages.filter((m) => m.type === 'push').length === 2, 'two pushes');
    await waitFor(() => messages.some((m) => m.type === 'heartbeat'), 'a heartbeat');
    expect(messages.filter((m) => m.type === 'push')).toEqual([{ type: 'push', project: 'acme/app' }, { type: 'push', project: 'acme/app' }]);

    // A new list replaces the old one.
    stream.write(encodeFluxMessage({ type: 'subscribe', projects: [] }));
    await waitFor(() => messages.filter((m) => m.type === 'subscribed').length === 2, 'the second answer');
    hub.push({ projectId: 7, fullPath: 'acme/app' });
    await new Promise((r) => setTimeout(r, 50));
    expect(messages.filter((m) => m.type === 'push')).toHaveLength(2);
  });

  test('standalone mode: every project is accepted and matched by path', async () => {
    await setUp({ access: null });
    const { stream, messages } = await open();
    stream.write(encodeFluxMessage({ type: 'subscribe', projects: ['Team/Repo'] }));
    await waitFor(() => messages.some((m) => m.type === 'subscribed'), 'the answer');
    hub.push({ projectId: 1, fullPath: null });
    hub.push({ projectId: 1, fullPath: 'team/repo' });
    await waitFor(() => messages.some((m) => m.type === 'push'), 'the push');
    expect(messages.filter((m) => m.type === 'push')).toEqual([{ type: 'push', project: 'Team/Repo' }]);
  });

  test.each([
    ['a message of the wrong type', encodeFluxMessage({ type: 'heartbeat' })],
    ['more projects than kas allows', encodeFluxMessage({ type: 'subscribe', projects: ['a/a', 'a/b', 'a/c'] })],
    ['a path that is no project', encodeFluxMessage({ type: 'subscribe', projects: ['../../x'] })],
    ['an announced length over the limit', Buffer.from([0xff, 0xff, 0xff, 0xff])],
    ['a body that is no JSON', Buffer.from([0, 0, 0, 3, 0x61, 0x62, 0x63])],
  ])('%s resets the stream with PROTOCOL_ERROR; the session goes on', async (_what, data) => {
    await setUp({ access: null, maxProjects: 2 });
    const { stream } = await open();
    const failed = errorOf(stream);
    stream.write(data);
    expect((await failed).code).toBe('PROTOCOL_ERROR');
    await waitFor(() => hub.streamCount === 0, 'kas to forget the stream');
    const again = await open();
    again.stream.write(encodeFluxMessage({ type: 'subscribe', projects: ['a/b'] }));
    await waitFor(() => again.messages.some((m) => m.type === 'subscribed'), 'a new stream to work');
  });

  test('an agent may have a bounded number of streams open', async () => {
    await setUp({ access: null });
    const streams = await Promise.all(Array.from({ length: MAX_FLUX_STREAMS_PER_AGENT }, () => open()));
    const extra = agentSide.openStream({ t: FLUX_GIT_PUSH_STREAM });
    expect((await errorOf(extra)).code).toBe('STREAM_LIMIT');
    streams[0]!.stream.reset('CANCELLED');
    await waitFor(() => hub.streamCount === MAX_FLUX_STREAMS_PER_AGENT - 1, 'kas to forget the reset stream');
    await open();
  });

  test('stopping kas ends the streams', async () => {
    await setUp({ access: null });
    const { stream } = await open();
    const ended = new Promise((r) => stream.once('end', r));
    stream.resume();
    hub.stop();
    await ended;
    expect(hub.streamCount).toBe(0);
  });
});
