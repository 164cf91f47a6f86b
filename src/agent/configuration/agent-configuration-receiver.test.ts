/**
 * The agent half of the agent configuration feature over a memory session: kas's side is made from
 * the protocol alone, agentk's side dispatches streams through StreamHandlers as the tunnel does.
 */
import { Writable } from 'node:stream';
import { AGENT_CONFIG_STREAM, MAX_AGENT_CONFIG_BYTES, decodeAgentConfigReply, encodeAgentConfigData, encodeAgentConfigHead, type AgentConfigDocument, type AgentConfigReply } from '../../protocol/agent-config.js';
import { TunnelError } from '../../protocol/errors.js';
import type { Head } from '../../protocol/frames.js';
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import type { TunnelStream } from '../../protocol/stream.js';
import { errorOf } from '../../../test/support/streams.js';
import { createLogger, type Logger } from '../../shared/logger.js';
import { AgentMetrics } from '../observability/metrics.js';
import { StreamHandlers } from '../tunnel/stream-handlers.js';
import { followLogLevel } from '../observability/log-level.js';
import { AgentConfigSectionsHub, AgentConfigurationReceiver } from './agent-configuration-receiver.js';

class Lines extends Writable {
  readonly entries: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const line of chunk.toString().split('\n').filter(Boolean)) this.entries.push(JSON.parse(line) as Record<string, unknown>);
    cb();
  }
}

function replyOf(stream: TunnelStream): Promise<AgentConfigReply> {
  return new Promise((resolve, reject) => {
    stream.once('reply', (head: Head) => {
      stream.resume();
      resolve(decodeAgentConfigReply(head));
    });
    stream.once('error', reject);
  });
}

describe('AgentConfigurationReceiver', () => {
  let kas: Session;
  let agentSide: Session;
  let root: Logger;
  let logs: Lines;
  let feature: AgentConfigurationReceiver;
  let handlers: StreamHandlers;

  beforeEach(async () => {
    logs = new Lines();
    root = createLogger({ name: 'agentk', level: 'info', destination: logs });
    handlers = new StreamHandlers(new AgentMetrics({ defaultMetrics: false }));
    const sections = new AgentConfigSectionsHub(root);
    followLogLevel(sections, root);
    feature = new AgentConfigurationReceiver({ handlers, rootLogger: root, logger: root.child({ module: 'configuration' }), sections });
    await feature.start();
    const [a, b] = createMemoryTransportPair();
    kas = new Session(a, { role: 'server' });
    agentSide = new Session(b, { role: 'client', hello: { features: handlers.types } });
    agentSide.on('stream', (s) => handlers.dispatch(s, root.child({ streamId: s.id })));
    await Promise.all([kas.ready, agentSide.ready]);
  });

  afterEach(async () => {
    await feature.stop();
    kas.close();
    agentSide.close();
  });

  const push = (doc: AgentConfigDocument, commit: string | null = 'c1') => replyOf(kas.openStream(encodeAgentConfigHead({ commit }), { data: encodeAgentConfigData(doc), end: true }));

  test('agentk announces the stream type in its handshake', () => {
    expect(kas.peerInfo?.features).toEqual([AGENT_CONFIG_STREAM]);
  });

  test('the configured level applies to the root logger and its children; none brings back the start level', async () => {
    const child = root.child({ module: 'kubernetes_api' });
    expect(child.isLevelEnabled('debug')).toBe(false);
    expect(await push({ observability: { logging: { level: 'debug' } }, gitops: { manifest_projects: [] } })).toEqual({ applied: true });
    expect(root.level).toBe('debug');
    expect(child.isLevelEnabled('debug')).toBe(true);
    expect(feature.applied).toMatchObject({ commit: 'c1', logLevel: 'debug' });
    expect(logs.entries.find((e) => e.msg === 'agent configuration applied')).toMatchObject({ commit: 'c1', logLevel: 'debug', previousLogLevel: 'info', module: 'configuration' });

    expect(await push({ observability: { logging: { level: 'error' } } }, 'c2')).toEqual({ applied: true });
    expect(child.isLevelEnabled('warn')).toBe(false);
    // The switch to error is still announced (before it takes effect).
    expect(logs.entries.filter((e) => e.msg === 'agent configuration applied').at(-1)).toMatchObject({ commit: 'c2', logLevel: 'error' });

    expect(await push({}, null)).toEqual({ applied: true });
    expect(root.level).toBe('info');
    expect(feature.applied).toEqual({ commit: null, document: {}, logLevel: 'info' });
  });

  test('the same configuration from a second session is applied again quietly', async () => {
    await push({ observability: { logging: { level: 'warn' } } });
    const announced = logs.entries.length;
    await push({ observability: { logging: { level: 'warn' } } });
    expect(root.level).toBe('warn');
    expect(logs.entries.length).toBe(announced);
  });

  test('a document agentk cannot use is answered "not applied" with the reason; the level stays', async () => {
    await push({ observability: { logging: { level: 'debug' } } });
    const stream = kas.openStream(encodeAgentConfigHead({ commit: 'bad' }), { data: new TextEncoder().encode('{"observability":{"logging":{"level":"chatty"}}}'), end: true });
    const reply = await replyOf(stream);
    expect(reply.applied).toBe(false);
    expect(reply.error).toContain('observability.logging.level must be one of info, debug, warn, error');
    expect(root.level).toBe('debug');
    expect(feature.applied?.commit).toBe('c1');
  });

  test('a malformed head resets the stream with PROTOCOL_ERROR', async () => {
    const stream = kas.openStream({ t: AGENT_CONFIG_STREAM, commit: 42 }, { data: encodeAgentConfigData({}), end: true });
    const err = await errorOf(stream);
    expect(err).toBeInstanceOf(TunnelError);
    expect(err.code).toBe('PROTOCOL_ERROR');
  });

  test(`a document over ${MAX_AGENT_CONFIG_BYTES} bytes is refused before it is all read`, async () => {
    const stream = kas.openStream(encodeAgentConfigHead({ commit: 'huge' }));
    stream.end(Buffer.alloc(MAX_AGENT_CONFIG_BYTES + 1, 0x20));
    const err = await errorOf(stream);
    expect(err.code).toBe('PROTOCOL_ERROR');
    expect(err.message).toContain(`larger than ${MAX_AGENT_CONFIG_BYTES} bytes`);
    expect(root.level).toBe('info');
  });

  test('while stopping, nothing new is applied', async () => {
    await feature.stop();
    const reply = await push({ observability: { logging: { level: 'debug' } } });
    expect(reply).toEqual({ applied: false, error: 'agentk is stopping' });
    expect(root.level).toBe('info');
  });
});
