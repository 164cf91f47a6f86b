import { Registry } from 'prom-client';
import { encodeAgentInfo, encodeAgentInfoHead, type AgentInfo } from '../../protocol/agent-info.js';
import { TunnelError } from '../../protocol/errors.js';
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import { replyOf } from '../../protocol/stream.js';
import { createLogger } from '../../shared/logger.js';
import { LogCapture } from '../../../test/support/logs.js';
import { errorOf } from '../../../test/support/streams.js';
import { waitFor } from '../../../test/support/wait.js';
import type { RegisterAgentEvent } from '../gitlab/agent-events.js';
import type { AgentConnection } from '../tunnel/agent-registry.js';
import { RegistrationMetrics } from './metrics.js';
import { RegistrationServer } from './registration-server.js';

const info: AgentInfo = { version: '1.0.0', commit: 'c', pod_namespace: 'ns', pod_name: 'pod', pod_uid: 'uid', architecture: 'arm64', kubernetes_version: 'v1.20.2', extra_telemetry: { installation_method: 'helm' } };

async function setup(options: { projectId: number | null; readTimeoutMs?: number; changed?: () => Promise<void> }) {
  const [a, b] = createMemoryTransportPair();
  const agent = new Session(a, { role: 'client', hello: {} });
  const kas = new Session(b, { role: 'server', welcome: { features: ['agent_info'] } });
  const registry = new Registry();
  const changed: number[] = [];
  const events: RegisterAgentEvent[] = [];
  const connection = { connectionId: 'c1', identity: { agentId: 7, agentName: 'a', projectId: options.projectId }, session: kas, connectedAt: new Date(), meta: {} } as unknown as AgentConnection;
  const server = new RegistrationServer({
    records: {
      changed: (agentId) => {
        changed.push(agentId);
        return options.changed?.() ?? Promise.resolve();
      },
    },
    events: { registerAgent: (e) => events.push(e) },
    metrics: new RegistrationMetrics(registry),
    readTimeoutMs: options.readTimeoutMs,
  });
  const logger = createLogger({ name: 'kas', level: 'debug', destination: new LogCapture() });
  kas.on('stream', (stream) => server.handle(stream, connection, logger));
  await Promise.all([agent.ready, kas.ready]);
  return { agent, kas, connection, changed, events, registry, close: () => (agent.close(), kas.close()) };
}

describe('RegistrationServer', () => {
  test('a valid registration is kept on the connection, written for other replicas and, with a project, reported to GitLab', async () => {
    const t = await setup({ projectId: 42 });
    try {
      const stream = t.agent.openStream(encodeAgentInfoHead(), { data: encodeAgentInfo(info), end: true });
      expect(await replyOf(stream)).toEqual({ registered: true });
      expect(t.connection.registration?.info).toEqual(info);
      expect(t.changed).toEqual([7]);
      expect(t.events).toEqual([{ project_id: 42, agent_id: 7, agent_version: '1.0.0', architecture: 'arm64', kubernetes_version: 'v1.20.2', extra_telemetry: { installation_method: 'helm' } }]);
    } finally {
      t.close();
    }
  });

  test('standalone (no project): no GitLab event', async () => {
    const t = await setup({ projectId: null });
    try {
      await replyOf(t.agent.openStream(encodeAgentInfoHead(), { data: encodeAgentInfo(info), end: true }));
      expect(t.connection.registration).toBeDefined();
      expect(t.events).toEqual([]);
    } finally {
      t.close();
    }
  });

  test('data that never ends is reset with CANCELLED after the read timeout; nothing is kept', async () => {
    const t = await setup({ projectId: 42, readTimeoutMs: 100 });
    try {
      const stream = t.agent.openStream(encodeAgentInfoHead(), { data: new TextEncoder().encode('{"version":') });
      expect(((await errorOf(stream)) as TunnelError).code).toBe('CANCELLED');
      expect(t.connection.registration).toBeUndefined();
      expect(t.changed).toEqual([]);
      expect(await t.registry.getSingleMetricAsString('kas_agent_registrations_total')).toContain('result="timeout"} 1');
    } finally {
      t.close();
    }
  });

  test('an agent registering in a loop costs one write of its records at a time', async () => {
    let release!: () => void;
    const t = await setup({ projectId: null, changed: () => new Promise<void>((r) => (release = r)) });
    try {
      for (let i = 0; i < 20; i++) await replyOf(t.agent.openStream(encodeAgentInfoHead(), { data: encodeAgentInfo({ ...info, pod_name: `pod-${i}` }), end: true }));
      expect(t.changed).toEqual([7]);
      release();
      await waitFor(() => t.changed.length === 2, 'the one write that follows');
      release();
      await new Promise((r) => setTimeout(r, 50));
      expect(t.changed).toEqual([7, 7]);
      expect(t.connection.registration?.info.pod_name).toBe('pod-19');
    } finally {
      t.close();
    }
  });

  test('a head of another type is refused', async () => {
    const t = await setup({ projectId: null });
    try {
      const err = await errorOf(t.agent.openStream({ t: 'agent_info_v2' }, { data: encodeAgentInfo(info), end: true }));
      expect(err).toBeInstanceOf(TunnelError);
      expect((err as TunnelError).code).toBe('PROTOCOL_ERROR');
    } finally {
      t.close();
    }
  });
});
