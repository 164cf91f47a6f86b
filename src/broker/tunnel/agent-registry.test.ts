import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import { AgentRegistry, type AgentConnection } from './agent-registry.js';

async function openSession(): Promise<{ server: Session; client: Session }> {
  const [a, b] = createMemoryTransportPair();
  const server = new Session(b, { role: 'server' });
  const client = new Session(a, { role: 'client' });
  await server.ready;
  return { server, client };
}

function conn(agentId: number, session: Session): AgentConnection {
  return { connectionId: `c${Math.random()}`, identity: { agentId, agentName: 'a', projectId: null }, session, connectedAt: new Date(), meta: { version: '', commit: '', podName: '', podNamespace: '', kubernetesVersion: '', features: [] } };
}

describe('agent registry', () => {
  test('a request waits for its agent and gets the session as soon as it registers', async () => {
    const r = new AgentRegistry();
    const { server, client } = await openSession();
    const waiting = r.waitFor(7, 10_000);
    r.register(conn(7, server));
    await expect(waiting).resolves.toBe(server);
    server.close();
    client.close();
  });

  test('the wait ends with null after the timeout or when the client goes away', async () => {
    const r = new AgentRegistry();
    await expect(r.waitFor(1, 20)).resolves.toBeNull();
    const ac = new AbortController();
    const p = r.waitFor(1, 10_000, ac.signal);
    ac.abort();
    await expect(p).resolves.toBeNull();
  });

  test('new streams go to the least loaded session; a removed session is not picked', async () => {
    const r = new AgentRegistry();
    const one = await openSession();
    const two = await openSession();
    one.client.on('stream', () => undefined);
    const unregisterOne = r.register(conn(1, one.server));
    r.register(conn(1, two.server));
    one.server.openStream({ t: 'x' });
    expect(r.pick(1)).toBe(two.server);
    expect(r.connectionCount).toBe(2);
    unregisterOne();
    expect(r.connections(1).map((c) => c.session)).toEqual([two.server]);
    for (const s of [one, two]) {
      s.server.close();
      s.client.close();
    }
  });

  test('connectivity listeners hear each registration and each end once, with the reason the listener gave', async () => {
    const r = new AgentRegistry();
    const heard: string[] = [];
    r.onConnectivity((c) => heard.push(c.kind === 'connected' ? `connected ${c.connection.identity.agentId}` : `disconnected ${c.connection.identity.agentId} ${c.reason} ${c.detail}`));
    const { server, client } = await openSession();
    const unregister = r.register(conn(3, server));
    unregister('keepalive_timeout', 'no pong');
    unregister('error');
    expect(heard).toEqual(['connected 3', 'disconnected 3 keepalive_timeout no pong']);
    server.close();
    client.close();
  });
});

