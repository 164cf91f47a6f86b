import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import { KasStreams, KasStreamsStoppedError, type KasSession } from './kas-streams.js';

/** A client session (agentk) and a server session (kas) whose WELCOME announces `features`. */
async function pair(features: string[] | undefined): Promise<{ client: Session; server: Session; served: TunnelStream[] }> {
  const [a, b] = createMemoryTransportPair();
  const server = new Session(b, { role: 'server', welcome: features ? { connectionId: 'c1', features } : { connectionId: 'c1' } });
  const client = new Session(a, { role: 'client', hello: {} });
  const served: TunnelStream[] = [];
  server.on('stream', (s) => {
    served.push(s);
    s.reply({ ok: true }, { end: true });
    s.resume();
  });
  await Promise.all([client.ready, server.ready]);
  return { client, server, served };
}

describe('KasStreams', () => {
  const sessions: Session[] = [];
  afterEach(() => {
    for (const s of sessions.splice(0)) s.close();
  });

  it('opens a stream only on a session whose kas serves the type, waiting for one', async () => {
    const kas = new KasStreams();
    const old = await pair(undefined);
    const fresh = await pair(['agent_info']);
    sessions.push(old.client, old.server, fresh.client, fresh.server);
    kas.added(old.client, old.client.peerInfo!);
    expect(kas.servedBy('agent_info')).toBe(false);
    const opening = kas.open({ t: 'agent_info' }, { end: true });
    kas.added(fresh.client, fresh.client.peerInfo!);
    const stream = await opening;
    expect(await replyOf(stream)).toEqual({ ok: true });
    expect(old.served).toHaveLength(0);
    expect(fresh.served).toHaveLength(1);
    expect(kas.servedBy('agent_info')).toBe(true);
  });

  it('tells session listeners of sessions open now and later, and when each ends', async () => {
    const kas = new KasStreams();
    const one = await pair(['x']);
    const two = await pair(['x']);
    sessions.push(one.client, one.server, two.client, two.server);
    kas.added(one.client, one.client.peerInfo!);
    const seen: KasSession[] = [];
    const ended: string[] = [];
    kas.onSession((s) => {
      seen.push(s);
      s.onEnd(() => ended.push(s.connectionId));
    });
    kas.added(two.client, two.client.peerInfo!);
    expect(seen).toHaveLength(2);
    expect(seen[0]!.features.has('x')).toBe(true);
    kas.removed(one.client);
    expect(ended).toEqual(['c1']);
    expect(kas.sessions).toHaveLength(1);
  });

  it('rejects waiting opens when agentk stops or the caller aborts', async () => {
    const kas = new KasStreams();
    const controller = new AbortController();
    const aborted = kas.open({ t: 'x' }, { signal: controller.signal });
    controller.abort(new Error('no longer needed'));
    await expect(aborted).rejects.toThrow('no longer needed');
    const waiting = kas.open({ t: 'x' });
    kas.stop();
    await expect(waiting).rejects.toBeInstanceOf(KasStreamsStoppedError);
    await expect(kas.open({ t: 'x' })).rejects.toBeInstanceOf(KasStreamsStoppedError);
  });
});
