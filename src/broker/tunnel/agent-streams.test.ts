import { TunnelError } from '../../protocol/errors.js';
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import { replyOf } from '../../protocol/stream.js';
import { createLogger } from '../../shared/logger.js';
import type { AgentConnection } from './agent-registry.js';
import { AgentStreams } from './agent-streams.js';

const logger = createLogger({ name: 'test', level: 'silent' });

describe('AgentStreams', () => {
  it('routes agent-opened streams by type, resets unknown types with PROTOCOL_ERROR and keeps the session', async () => {
    const streams = new AgentStreams();
    const seen: number[] = [];
    streams.register('agent_info', (stream, connection) => {
      seen.push(connection.identity.agentId);
      stream.reply({ stored: true }, { end: true });
      stream.resume();
    });
    const [a, b] = createMemoryTransportPair();
    const server = new Session(b, { role: 'server', welcome: { features: streams.types } });
    const client = new Session(a, { role: 'client', hello: {} });
    const connection = { identity: { agentId: 7 } } as unknown as AgentConnection;
    server.on('stream', (s) => streams.dispatch(s, connection, logger));
    await Promise.all([client.ready, server.ready]);
    expect(client.peerInfo?.features).toEqual(['agent_info']);

    const unknown = client.openStream({ t: 'nope' }, { end: true });
    const err = await new Promise<Error>((resolve) => unknown.on('error', resolve));
    expect(err).toBeInstanceOf(TunnelError);
    expect((err as TunnelError).code).toBe('PROTOCOL_ERROR');

    const ok = client.openStream({ t: 'agent_info' }, { end: true });
    expect(await replyOf(ok)).toEqual({ stored: true });
    expect(seen).toEqual([7]);
    expect(client.state).toBe('open');
    client.close();
    server.close();
  });

  it('refuses a registration after the types were announced, and the same type twice', () => {
    const streams = new AgentStreams();
    streams.register('a', () => undefined);
    expect(() => streams.register('a', () => undefined)).toThrow(/already registered/);
    void streams.types;
    expect(() => streams.register('b', () => undefined)).toThrow(/after kas started/);
  });
});
