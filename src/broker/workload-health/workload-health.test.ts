/**
 * kas's half of workload health with agents made from the protocol alone (memory transports): what
 * is kept and shown, what a hostile or buggy agent can and cannot do (its streams are reset, its
 * session and the other agents go on, memory stays within the caps), and the agent's last sighting.
 */
import { Registry } from 'prom-client';
import { TunnelError } from '../../protocol/errors.js';
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import { MAX_WORKLOAD_HEALTH_BYTES, WORKLOAD_HEALTH_STREAM, encodeWorkloadHealthData, encodeWorkloadHealthHead, type WorkloadHealthSummary } from '../../protocol/workload-health.js';
import { createLogger } from '../../shared/logger.js';
import { errorOf, writeAll } from '../../../test/support/streams.js';
import { waitFor } from '../../../test/support/wait.js';
import type { AgentIdentity } from '../auth/types.js';
import { AgentRegistry } from '../tunnel/agent-registry.js';
import { HealthStore } from './health-store.js';
import { WorkloadHealthMetrics } from './metrics.js';
import { WorkloadHealth } from './workload-health.js';

const silent = createLogger({ name: 'test', level: 'silent' });

const SUMMARY: WorkloadHealthSummary = {
  namespaces: [{ namespace: 'shop', omitted: 0, problems: [{ kind: 'Deployment', name: 'web', problem: 'Unavailable', desired: 3, available: 1 }] }],
  omitted_namespaces: 0,
  omitted_problems: 0,
};

interface FakeAgent {
  agentSide: Session;
  unregister(): void;
  send(summary: unknown, seq?: number, instance?: string): TunnelStream;
}

describe('workload health in kas', () => {
  let registry: AgentRegistry;
  let store: HealthStore;
  let health: WorkloadHealth;
  let metrics: WorkloadHealthMetrics;
  let clock: number;
  const sessions: Session[] = [];

  beforeEach(() => {
    registry = new AgentRegistry();
    clock = Date.parse('2026-12-03T06:00:00Z');
    metrics = new WorkloadHealthMetrics(new Registry(), () => ({ agents: store.agents, bytes: store.totalBytes }));
    store = new HealthStore({ maxAgents: 3, maxBytes: 64 * 1024 * 1024, retentionMs: 3_600_000, isConnected: (id) => registry.connections(id).length > 0, metrics });
    health = new WorkloadHealth({ store, mirror: null, registry, presence: { holders: async () => [], waitRegistered: () => new Promise(() => undefined) }, metrics, now: () => clock });
    health.start();
  });

  afterEach(async () => {
    await health.stop();
    for (const s of sessions.splice(0)) s.close();
  });

  async function connect(agentId: number): Promise<FakeAgent> {
    const [a, b] = createMemoryTransportPair();
    const kasSide = new Session(a, { role: 'server', welcome: { features: [WORKLOAD_HEALTH_STREAM] } });
    const agentSide = new Session(b, { role: 'client', hello: {} });
    sessions.push(kasSide, agentSide);
    await Promise.all([kasSide.ready, agentSide.ready]);
    const identity: AgentIdentity = { agentId, agentName: `agent-${agentId}`, projectId: null, defaultBranch: 'main' };
    const conn = { connectionId: `conn-${agentId}`, identity, session: kasSide, connectedAt: new Date(clock), meta: { version: '', commit: '', podNamespace: '', podName: '', kubernetesVersion: '', features: [] } };
    kasSide.on('stream', (s: TunnelStream) => health.receive(s, conn, silent));
    const unregister = registry.register(conn);
    return {
      agentSide,
      unregister,
      send: (summary, seq = 1, instance = 'i1') =>
        agentSide.openStream(encodeWorkloadHealthHead({ instance, seq }), { data: new TextEncoder().encode(JSON.stringify(summary)), end: true }),
    };
  }

  async function refusedWith(stream: TunnelStream): Promise<string> {
    const err = await errorOf(stream);
    expect(err).toBeInstanceOf(TunnelError);
    expect(err.code).toBe('PROTOCOL_ERROR');
    return err.message;
  }

  it('keeps the summary an agent sends and shows it with when it arrived', async () => {
    const agent = await connect(1);
    expect(await health.view(2)).toBeNull();
    expect(await health.view(1)).toMatchObject({ agent_id: 1, connected: true, updated_at: null, namespaces: [] });
    clock += 1000;
    expect(await replyOf(agent.send(SUMMARY))).toEqual({ accepted: true });
    expect(await health.view(1)).toEqual({
      agent_id: 1,
      connected: true,
      last_seen: new Date(clock).toISOString(),
      updated_at: new Date(clock).toISOString(),
      ...SUMMARY,
    });
    // An earlier summary of the same agentk arriving late changes nothing.
    await replyOf(agent.send({ namespaces: [], omitted_namespaces: 0, omitted_problems: 0 }, 0));
    expect((await health.view(1))!.namespaces).toEqual(SUMMARY.namespaces);
  });

  it('resets the streams of a hostile agent, keeps its last good summary, and its session goes on', async () => {
    const agent = await connect(1);
    await replyOf(agent.send(SUMMARY));
    expect(await refusedWith(agent.agentSide.openStream({ t: WORKLOAD_HEALTH_STREAM, instance: 'i1', seq: 'x' }, { data: encodeWorkloadHealthData(SUMMARY), end: true }))).toMatch(/seq/);
    expect(await refusedWith(agent.agentSide.openStream(encodeWorkloadHealthHead({ instance: 'i1', seq: 2 }), { data: new TextEncoder().encode('{"namespaces":'), end: true }))).toMatch(/JSON/);
    expect(await refusedWith(agent.send({ ...SUMMARY, secrets: ['x'] }, 3))).toMatch(/unknown field/);
    const many = { ...SUMMARY, namespaces: Array.from({ length: 5000 }, (_, i) => ({ namespace: `ns-${i}`, problems: [], omitted: 0 })) };
    expect(await refusedWith(agent.send(many, 4))).toMatch(/at most 200 namespaces/);

    // More than 1 MiB, in pieces: kas stops at the limit instead of buffering it all.
    const huge = agent.agentSide.openStream(encodeWorkloadHealthHead({ instance: 'i1', seq: 5 }));
    const refused = refusedWith(huge);
    void writeAll(huge, Buffer.alloc(MAX_WORKLOAD_HEALTH_BYTES * 4, 0x20), 64 * 1024).catch(() => undefined);
    expect(await refused).toMatch(/exceeds/);

    expect(agent.agentSide.state).toBe('open');
    expect((await health.view(1))!.namespaces).toEqual(SUMMARY.namespaces);
    const refusedCount = (await metrics.received.get()).values.find((v) => v.labels.outcome === 'refused')?.value;
    expect(refusedCount).toBe(5);
    // The same session still delivers a good summary.
    await replyOf(agent.send({ namespaces: [], omitted_namespaces: 0, omitted_problems: 0 }, 6));
    expect((await health.view(1))!.namespaces).toEqual([]);
  });

  it('resets a stream whose summary never ends', async () => {
    await health.stop();
    health = new WorkloadHealth({ store, mirror: null, registry, presence: { holders: async () => [], waitRegistered: () => new Promise(() => undefined) }, metrics, receiveTimeoutMs: 200 });
    const agent = await connect(1);
    const stream = agent.agentSide.openStream(encodeWorkloadHealthHead({ instance: 'i1', seq: 1 }), { data: new TextEncoder().encode('{') });
    expect(await refusedWith(stream)).toMatch(/no summary within 0.2 s/);
    expect(agent.agentSide.state).toBe('open');
  });

  it('refuses more concurrent summaries on one connection than agentk ever sends, and takes new ones once those end', async () => {
    const agent = await connect(1);
    const held = Array.from({ length: 4 }, (_, i) => agent.agentSide.openStream(encodeWorkloadHealthHead({ instance: 'i1', seq: i }), { data: new TextEncoder().encode('{') }));
    const fifth = agent.agentSide.openStream(encodeWorkloadHealthHead({ instance: 'i1', seq: 9 }), { data: encodeWorkloadHealthData(SUMMARY), end: true });
    const err = await errorOf(fifth);
    expect(err.code).toBe('STREAM_LIMIT');
    for (const s of held) s.reset('CANCELLED', 'test');
    await waitFor(async () => (await replyOf(agent.send(SUMMARY, 10)).catch(() => null)) !== null, 'a summary to be taken again');
    expect(agent.agentSide.state).toBe('open');
  });

  it('shows a disconnected agent with its last summary and when it was last seen', async () => {
    const agent = await connect(1);
    await replyOf(agent.send(SUMMARY));
    const updated = new Date(clock).toISOString();
    clock += 60_000;
    agent.unregister();
    const disconnectedAt = new Date(clock).toISOString();
    clock += 60_000;
    expect(await health.view(1)).toEqual({ agent_id: 1, connected: false, last_seen: disconnectedAt, updated_at: updated, ...SUMMARY });
    // Forgotten after retention.
    clock += 3_600_000;
    expect(await health.view(1)).toBeNull();
  });

  it('keeps at most max_agents agents, whatever many agents send', async () => {
    for (let id = 1; id <= 6; id++) {
      const agent = await connect(id);
      await replyOf(agent.send(SUMMARY));
      agent.unregister();
    }
    expect(store.agents).toBe(3);
    expect(await health.view(1)).toBeNull();
    expect(await health.view(6)).not.toBeNull();
  });
});
