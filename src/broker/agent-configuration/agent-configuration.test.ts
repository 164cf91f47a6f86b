/**
 * The kas half of the agent configuration feature with a stub source and stub GitLab, and agents
 * made from the protocol alone (memory transports): what is read when, what GitLab is told, what
 * each session receives, and what a broken file or a failing peer does.
 */
import { decodeAgentConfigData, decodeAgentConfigHead, encodeAgentConfigReply, type AgentConfigDocument, type AgentConfigReply } from '../../protocol/agent-config.js';
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import type { TunnelStream } from '../../protocol/stream.js';
import { readAll } from '../../../test/support/streams.js';
import { waitFor } from '../../../test/support/wait.js';
import { createLogger } from '../../shared/logger.js';
import type { AgentIdentity } from '../auth/types.js';
import { Registry } from 'prom-client';
import { AgentConfigMetrics } from './metrics.js';
import { AgentRegistry } from '../tunnel/agent-registry.js';
import { AgentConfigurationServer } from './agent-configuration.js';
import type { ConfigFile, ConfigSource } from './config-source.js';

const silent = createLogger({ name: 'test', level: 'silent' });

/** Files by agent name; `gate` holds reads until released. */
class StubSource implements ConfigSource {
  readonly files = new Map<string, { commit: string; text: string }>();
  reads = 0;
  failure: Error | null = null;
  gate: Promise<void> | null = null;

  async read(agent: AgentIdentity, known: string | null | undefined): Promise<ConfigFile | null> {
    this.reads++;
    if (this.gate) await this.gate;
    if (this.failure) throw this.failure;
    const f = this.files.get(agent.agentName);
    if (!f) return known === null ? null : { commit: null, content: null };
    return f.commit === known ? null : { commit: f.commit, content: new TextEncoder().encode(f.text) };
  }
}

class StubGitLab {
  readonly posts: Array<{ agentId: number; config: unknown }> = [];
  failures = 0;
  async postAgentConfiguration(agentId: number, config: unknown): Promise<void> {
    if (this.failures > 0) {
      this.failures--;
      throw new Error('GitLab answered 503');
    }
    this.posts.push({ agentId, config });
  }
}

interface FakeAgent {
  received: Array<{ commit: string | null; doc: AgentConfigDocument }>;
  /** What the fake agentk answers; null: it never answers. */
  answer: AgentConfigReply | null;
  unregister(): void;
  close(): void;
}

describe('AgentConfigurationServer', () => {
  let registry: AgentRegistry;
  let source: StubSource;
  let gitlab: StubGitLab;
  let metrics: AgentConfigMetrics;
  let module: AgentConfigurationServer;
  const agents: FakeAgent[] = [];

  function makeModule(options: { gitlab?: boolean; pollPeriodMs?: number; replyTimeoutMs?: number } = {}): AgentConfigurationServer {
    return new AgentConfigurationServer({
      registry,
      source,
      gitlab: options.gitlab === false ? null : gitlab,
      pollPeriodMs: options.pollPeriodMs ?? 3_600_000,
      metrics,
      logger: silent,
      replyTimeoutMs: options.replyTimeoutMs,
    });
  }

  beforeEach(async () => {
    registry = new AgentRegistry();
    source = new StubSource();
    gitlab = new StubGitLab();
    metrics = new AgentConfigMetrics(new Registry());
    module = makeModule();
    await module.start();
  });

  afterEach(async () => {
    await module.stop();
    for (const a of agents.splice(0)) a.close();
  });

  /** Connects an agentk made from the protocol alone and registers it, as the agent listener does. */
  async function connect(identity: AgentIdentity, features: string[] = ['http', 'agent_config']): Promise<FakeAgent> {
    const [a, b] = createMemoryTransportPair();
    const kasSide = new Session(a, { role: 'server' });
    const agentSide = new Session(b, { role: 'client', hello: { features } });
    const agent: FakeAgent = {
      received: [],
      answer: { applied: true },
      unregister: () => undefined,
      close: () => {
        agent.unregister();
        kasSide.close();
        agentSide.close();
      },
    };
    agentSide.on('stream', (s: TunnelStream) => {
      const head = decodeAgentConfigHead(s.peerHead!);
      void readAll(s).then((data) => {
        agent.received.push({ commit: head.commit, doc: decodeAgentConfigData(data) });
        if (agent.answer) s.reply(encodeAgentConfigReply(agent.answer), { end: true });
      });
    });
    await Promise.all([kasSide.ready, agentSide.ready]);
    agents.push(agent);
    const conn = { connectionId: `conn-${agents.length}`, identity, session: kasSide, connectedAt: new Date(), meta: { version: '', commit: '', podNamespace: '', podName: '', kubernetesVersion: '', features } };
    agent.unregister = registry.register(conn);
    return agent;
  }

  const prod: AgentIdentity = { agentId: 1, agentName: 'prod', projectId: 42, defaultBranch: 'main' };
  const staging: AgentIdentity = { agentId: 2, agentName: 'staging', projectId: 43, defaultBranch: 'main' };
  const metric = async (reason: string) => (await metrics.agentConfigErrors.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

  test('the first session triggers a read; GitLab is told once; every session, also a later one, gets the configuration', async () => {
    source.files.set('prod', { commit: 'c1', text: 'observability: {logging: {level: debug}}\nflux: {}\n' });
    const first = await connect(prod);
    await waitFor(() => first.received.length === 1, 'the first session to receive the configuration');
    expect(first.received[0]).toEqual({ commit: 'c1', doc: { observability: { logging: { level: 'debug' } } } });
    await waitFor(() => gitlab.posts.length === 1, 'GitLab to be told');
    expect(gitlab.posts[0]).toEqual({ agentId: 1, config: { observability: { logging: { level: 'debug' } }, flux: {} } });
    expect(module.status(1)).toMatchObject({ commit: 'c1', valid: true, unsupported_sections: ['flux'], applied_commit: 'c1' });

    const second = await connect(prod);
    await waitFor(() => second.received.length === 1, 'a session that connected later to receive the configuration in force');
    expect(source.reads).toBe(1);
    expect(first.received).toHaveLength(1);
    expect(gitlab.posts).toHaveLength(1);
  });

  test('other modules follow a section of every agent\'s configuration in force: latest value first, changes, and the agent leaving', async () => {
    source.files.set('prod', { commit: 'c1', text: 'observability: {logging: {level: debug}}\n' });
    const agent = await connect(prod);
    await waitFor(() => module.configuration(1) !== undefined, 'the configuration to be in force');
    const seen: Array<[unknown, number]> = [];
    const off = module.subscribe('observability', (section, agentId) => seen.push([section, agentId]));
    expect(seen).toEqual([[{ logging: { level: 'debug' } }, 1]]);
    source.files.set('prod', { commit: 'c2', text: 'observability: {logging: {level: warn}}\n' });
    module.pollProject(42);
    await waitFor(() => seen.length === 2, 'the changed section to be announced');
    expect(seen[1]).toEqual([{ logging: { level: 'warn' } }, 1]);
    agent.close();
    await waitFor(() => seen.length === 3, 'the agent leaving to be announced');
    expect(seen[2]).toEqual([undefined, 1]);
    expect(module.configuration(1)).toBeUndefined();
    off();
  });

  test('a broken file is reported and sent nowhere; the configuration in force stays', async () => {
    source.files.set('prod', { commit: 'c1', text: 'observability: {logging: {level: warn}}\n' });
    const agent = await connect(prod);
    await waitFor(() => agent.received.length === 1 && gitlab.posts.length === 1, 'the first configuration');
    source.files.set('prod', { commit: 'c2', text: 'observability: {logging: {level: loud}}\n' });
    module.pollProject(42);
    await waitFor(() => module.status(1)?.commit === 'c2', 'the broken commit to be read');
    expect(module.status(1)).toMatchObject({ valid: false, applied_commit: 'c1' });
    expect(module.status(1)?.error).toMatch(/^observability\.logging\.level: /);
    expect(await metric('invalid')).toBe(1);
    expect((await metrics.agentConfigsInvalid.get()).values[0]?.value).toBe(1);
    // The same broken commit again is not read (nor reported) again.
    module.pollProject(42);
    await waitFor(() => source.reads === 3, 'another poll');
    expect(await metric('invalid')).toBe(1);
    expect(agent.received).toHaveLength(1);
    expect(gitlab.posts).toHaveLength(1);
  });

  test('GitLab failing to take the configuration is tried again at the next poll, though the file did not change', async () => {
    gitlab.failures = 1;
    source.files.set('prod', { commit: 'c1', text: '' });
    const agent = await connect(prod);
    await waitFor(() => agent.received.length === 1, 'the empty configuration to reach agentk anyway');
    expect(agent.received[0]).toEqual({ commit: 'c1', doc: {} });
    await waitFor(() => module.status(1) !== null && source.reads === 1, 'the first poll');
    module.pollAgent(1);
    await waitFor(() => gitlab.posts.length === 1, 'GitLab to be told at the second poll');
    expect(await metric('gitlab')).toBe(1);
  });

  test('polls are per project, and requests during a poll make exactly one more', async () => {
    const a = await connect(prod);
    const b = await connect(staging);
    await waitFor(() => a.received.length === 1 && b.received.length === 1, 'both agents to get the empty configuration');
    expect(source.reads).toBe(2);
    let release!: () => void;
    source.gate = new Promise((r) => (release = r));
    module.pollProject(43);
    module.pollProject(43);
    module.pollProject(43);
    module.pollProject(99);
    expect(source.reads).toBe(3);
    source.gate = null;
    release();
    await waitFor(() => source.reads === 4, 'the one poll that was asked for during the first');
    module.pollAgent(7);
    expect(source.reads).toBe(4);
  });

  test('a read that fails keeps what is in force and is retried', async () => {
    source.failure = new Error('GitLab is down');
    const agent = await connect(prod);
    await waitFor(() => source.reads === 1, 'the first read');
    await waitFor(async () => (await metric('fetch')) === 1, 'the failure to be counted');
    expect(module.status(1)).toBeNull();
    source.failure = null;
    module.pollAgent(1);
    await waitFor(() => agent.received.length === 1, 'the configuration once the read works');
  });

  test('an agentk without the feature is sent nothing; one that refuses is counted and not asked again', async () => {
    source.files.set('prod', { commit: 'c1', text: 'observability: {logging: {level: error}}\n' });
    const old = await connect(prod, ['http']);
    const refusing = await connect(prod);
    refusing.answer = { applied: false, error: 'no thanks' };
    await waitFor(() => refusing.received.length === 1, 'the configuration to be offered');
    await waitFor(async () => (await metric('agent')) === 1, 'the refusal to be counted');
    expect(old.received).toEqual([]);
    // A newer configuration is offered again.
    source.files.set('prod', { commit: 'c2', text: '' });
    module.pollAgent(1);
    await waitFor(() => refusing.received.length === 2, 'the newer configuration to be offered');
    expect(old.received).toEqual([]);
  });

  test('an agentk that never answers has its stream reset after the reply timeout', async () => {
    await module.stop();
    module = makeModule({ replyTimeoutMs: 50 });
    await module.start();
    const mute = await connect(prod);
    mute.answer = null;
    await waitFor(() => mute.received.length === 1, 'the configuration to arrive');
    await waitFor(async () => (await metric('agent')) === 1, 'the missing answer to be counted');
  });

  test('polling repeats every period while connected and stops with the last session', async () => {
    await module.stop();
    module = makeModule({ pollPeriodMs: 10 });
    await module.start();
    const a = await connect(prod);
    const b = await connect(prod);
    await waitFor(() => source.reads >= 3, 'a few periodic polls');
    a.unregister();
    expect(module.status(1)).not.toBeNull();
    b.unregister();
    expect(module.status(1)).toBeNull();
    const reads = source.reads;
    module.pollAgent(1);
    module.pollProject(42);
    expect(source.reads).toBe(reads);
  });

  test('start() takes agents connected before it; stop() forgets them all', async () => {
    await module.stop();
    const agent = await connect(prod);
    module = makeModule({ gitlab: false });
    await module.start();
    await waitFor(() => agent.received.length === 1, 'an agent connected before start to get its configuration');
    expect(gitlab.posts).toEqual([]);
    await module.stop();
    expect(module.status(1)).toBeNull();
  });
});
