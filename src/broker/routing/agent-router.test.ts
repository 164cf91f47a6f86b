import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import { Registry } from 'prom-client';
import { Cancellation } from '../cancellation.js';
import { ProxyMetrics } from '../kubernetes-api/metrics.js';
import type { AgentPresence } from '../replicas/replica-state.js';
import { AgentRegistry } from '../tunnel/agent-registry.js';
import { AgentRouter } from './agent-router.js';
import type { PeerPool } from './peer-pool.js';

/** A promise the test resolves when it chooses. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A kas-to-kas session pair standing in for the session to another replica. */
async function peerSessions(): Promise<{ here: Session; there: Session }> {
  const [a, b] = createMemoryTransportPair();
  const there = new Session(b, { role: 'server' });
  const here = new Session(a, { role: 'client' });
  await Promise.all([there.ready, here.ready]);
  return { here, there };
}

describe('routing a request to another replica', () => {
  test.each(['the holders lookup', 'the peer connection'])('a client that goes away during %s gets no stream opened for it', async (slow) => {
    // Regression: after the awaits the router opened a route stream for a request whose client had
    // already left; nobody reset it, and the agent's upstream request (a watch) ran until the session ended.
    const { here, there } = await peerSessions();
    const holders = deferred<string[]>();
    const connected = deferred<Session>();
    const presence: AgentPresence = {
      holders: () => (slow === 'the holders lookup' ? holders.promise : Promise.resolve(['ws://peer'])),
      waitRegistered: () => new Promise(() => undefined),
    };
    let asked = 0;
    const peers = {
      get: () => {
        asked++;
        return slow === 'the peer connection' ? connected.promise : Promise.resolve(here);
      },
    } as unknown as PeerPool;
    const router = new AgentRouter(new AgentRegistry(), new ProxyMetrics(new Registry()), presence, peers);
    const client = new Cancellation();
    const opening = router.open(1, { path: '/watch' }, { end: true, timeoutMs: 10_000, cancel: client, tried: new Set() });
    await new Promise((r) => setImmediate(r));
    if (slow === 'the peer connection') expect(asked).toBe(1);
    client.cancel();
    holders.resolve(['ws://peer']);
    connected.resolve(here);
    await expect(opening).resolves.toBeNull();
    await new Promise((r) => setTimeout(r, 50));
    expect([here.streamCount, there.streamCount]).toEqual([0, 0]);
    here.close();
    there.close();
  });
});
