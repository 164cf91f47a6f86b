/**
 * Agent registration across kas and agentk on loopback: what agentk says about itself shows in the
 * API for GitLab's connected_agents (standalone, and on another replica through Redis), goes away
 * with the connection, is refused whole when a hostile agent sends something malformed or too big
 * (the session goes on), and in GitLab mode reaches GitLab's agent_events with the proxy's unique
 * users, retried after a 5xx without loss or duplicates.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { AGENT_INFO_STREAM, encodeAgentInfo, encodeAgentInfoHead, MAX_AGENT_INFO_BYTES } from '../../src/protocol/agent-info.js';
import { TunnelError } from '../../src/protocol/errors.js';
import { replyOf } from '../../src/protocol/stream.js';
import { Session } from '../../src/protocol/session.js';
import { goArchitecture } from '../../src/agent/registration/telemetry.js';
import { KasApp } from '../../src/broker/app.js';
import { createLogger } from '../../src/shared/logger.js';
import { BUILD_INFO } from '../../src/shared/version.js';
import { WsTransport } from '../../src/shared/ws-transport.js';
import { gitlabToKasJwt, startFakeGitLab, type AgentEventsPost, type FakeGitLab } from '../support/fake-gitlab.js';
import { FAKE_KUBERNETES_VERSION, startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { LogCapture } from '../support/logs.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { errorOf, readAll } from '../support/streams.js';
import { proxyRequest, startStack, type Stack } from '../support/stack.js';
import { waitFor } from '../support/wait.js';

interface AgentMeta {
  version: string;
  commit: string;
  pod_namespace: string;
  pod_name: string;
  kubernetes_version: string;
  pod_uid: string;
  architecture: string;
  extra_telemetry: Record<string, string>;
  registered_at: string | null;
}
interface Connection {
  connection_id: string;
  kas_instance: string;
  agent_meta: AgentMeta;
}

const apiSecret = randomBytes(32);

async function connectedAgents(apiAddress: string, agentId = 1): Promise<Connection[]> {
  const res = await fetch(`http://${apiAddress}/api/v1/connected_agents?agent_id=${agentId}`, { headers: { authorization: `Bearer ${gitlabToKasJwt(apiSecret)}` } });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { agents: Array<{ connections: Connection[] }> };
  return body.agents[0]?.connections ?? [];
}

function secretFile(dir: string): string {
  const file = join(dir, 'api.secret');
  writeFileSync(file, `${apiSecret.toString('base64')}\n`);
  return file;
}

const POD_UID = '3b0c9a3e-5f0e-4d8a-9c51-0a1b2c3d4e5f';
const agentOptions = {
  podName: 'agentk-7d9f-abcde',
  podNamespace: 'gitlab-agent',
  podUid: POD_UID,
  telemetryEnvironment: { GITLAB_AGENT_TELEMETRY_INSTALLATION_METHOD: 'helm', GITLAB_AGENT_TELEMETRY_HELM_CHART_VERSION: '0.1.0' },
};

/** An agent of our own on the agent listener: a raw client session, to send what agentk never would. */
async function rawAgentSession(stack: Stack): Promise<Session> {
  const ws = new WebSocket(`wss://${stack.kas.addresses.agent}/`, { headers: { Authorization: `Bearer ${stack.agentToken}` }, ca: stack.proxyCa });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const session = new Session(new WsTransport(ws), { role: 'client', hello: { agentVersion: 'hostile', podName: 'hostile', features: [] } });
  await session.ready;
  return session;
}

const dir = mkdtempSync(join(tmpdir(), 'kas-registration-'));
const apiSecretFile = secretFile(dir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('registration, standalone', () => {
  let upstream: FakeKubeApi;
  let stack: Stack;

  beforeAll(async () => {
    upstream = await startFakeKubeApi();
    stack = await startStack({ upstream, agent: agentOptions, kas: { api: { listen: { address: '127.0.0.1:0', authentication_secret_file: apiSecretFile } } } });
  });

  afterAll(async () => {
    await stack?.close();
    await upstream?.close();
  });

  test('connected_agents shows what agentk said on each of its connections', async () => {
    await stack.waitForAgent(2);
    let conns: Connection[] = [];
    await waitFor(async () => {
      conns = await connectedAgents(stack.kas.addresses.api!);
      return conns.length === 2 && conns.every((c) => c.agent_meta.registered_at !== null);
    }, 'both connections of agent 1 registered');
    for (const c of conns) {
      expect(c.agent_meta).toEqual({
        version: BUILD_INFO.version,
        commit: BUILD_INFO.commit,
        pod_namespace: 'gitlab-agent',
        pod_name: 'agentk-7d9f-abcde',
        pod_uid: POD_UID,
        architecture: goArchitecture(),
        kubernetes_version: FAKE_KUBERNETES_VERSION,
        extra_telemetry: { installation_method: 'helm', helm_chart_version: '0.1.0' },
        registered_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as unknown as string,
      });
    }
    const metrics = await (await fetch(`http://${stack.kas.addresses.observability}/metrics`)).text();
    expect(metrics).toMatch(/kas_agent_registrations_total\{result="ok"\} [2-9]/);
  });

  test('a hostile agent: oversized, malformed or invalid registrations are reset with PROTOCOL_ERROR, nothing is kept, the session goes on', async () => {
    const session = await rawAgentSession(stack);
    try {
      const id = (await waitForNewConnection(stack, session)).connectionId;
      const cases: Array<[string, Uint8Array]> = [
        ['oversized', new Uint8Array(MAX_AGENT_INFO_BYTES + 1).fill(0x20)],
        ['not JSON', new TextEncoder().encode('{"version": "1", ')],
        ['a JSON list', new TextEncoder().encode('[1,2,3]')],
        ['too much telemetry', new TextEncoder().encode(JSON.stringify({ version: '1', extra_telemetry: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v'])) }))],
        ['a number for a version', new TextEncoder().encode(JSON.stringify({ version: 2 }))],
      ];
      for (const [name, data] of cases) {
        const stream = session.openStream(encodeAgentInfoHead(), { data, end: true });
        const err = await errorOf(stream);
        expect([name, err instanceof TunnelError ? err.code : String(err)]).toEqual([name, 'PROTOCOL_ERROR']);
      }
      // Sent in pieces, growing past the limit without an end: reset as soon as it is too big.
      const growing = session.openStream({ t: AGENT_INFO_STREAM });
      for (let i = 0; i < 5; i++) growing.write(Buffer.alloc(4096, 0x20));
      expect(((await errorOf(growing)) as TunnelError).code).toBe('PROTOCOL_ERROR');
      let mine = (await connectedAgents(stack.kas.addresses.api!)).find((c) => c.connection_id === id);
      expect(mine?.agent_meta.registered_at).toBeNull();
      expect(mine?.agent_meta.pod_name).toBe('hostile');

      // The session still works: a valid registration is taken.
      const ok = session.openStream(encodeAgentInfoHead(), { data: encodeAgentInfo({ version: '9.9.9', commit: '', pod_namespace: 'x', pod_name: 'now-valid', pod_uid: '', architecture: 'arm64', kubernetes_version: 'v1.30.0', extra_telemetry: {} }), end: true });
      expect(await replyOf(ok)).toEqual({ registered: true });
      ok.resume();
      mine = (await connectedAgents(stack.kas.addresses.api!)).find((c) => c.connection_id === id);
      expect(mine?.agent_meta).toMatchObject({ version: '9.9.9', pod_name: 'now-valid', architecture: 'arm64', kubernetes_version: 'v1.30.0' });
      const metrics = await (await fetch(`http://${stack.kas.addresses.observability}/metrics`)).text();
      expect(metrics).toMatch(/kas_agent_registrations_total\{result="invalid"\} [6-9]/);
    } finally {
      session.close();
    }
    // The connection went: its registration with it.
    await waitFor(async () => (await connectedAgents(stack.kas.addresses.api!)).every((c) => c.agent_meta.pod_name !== 'now-valid'), 'the hostile connection\'s record to go');
    // The real agent was not disturbed.
    expect((await connectedAgents(stack.kas.addresses.api!)).filter((c) => c.agent_meta.pod_uid === POD_UID)).toHaveLength(2);
  });
});

/** The kas-side connection of a session the test opened (the one not there before). */
async function waitForNewConnection(stack: Stack, session: Session): Promise<{ connectionId: string }> {
  await session.ready;
  let found: { connectionId: string } | undefined;
  await waitFor(() => (found = stack.kas.registry.connections(1).find((c) => c.meta.podName === 'hostile')) !== undefined, 'kas to register the raw session');
  return found!;
}

describe('registration with replicas (Redis)', () => {
  let redis: TestRedis;
  let upstream: FakeKubeApi;
  let stack: Stack;
  let other: KasApp;

  beforeAll(async () => {
    redis = await startRedis();
    upstream = await startFakeKubeApi();
    stack = await startStack({
      upstream,
      startAgent: false,
      agent: agentOptions,
      kas: {
        redis: { server: { address: redis.address }, key_prefix: `registration-${process.pid}` },
        private_api: { listen: { address: '127.0.0.1:0', authentication_secret_file: apiSecretFile } },
        api: { listen: { address: '127.0.0.1:0', authentication_secret_file: apiSecretFile } },
        agent: { redis_conn_info_refresh: '30s', redis_conn_info_ttl: '60s' },
      },
    });
    other = new KasApp({ config: stack.kas.config, logger: createLogger({ name: 'kas', level: 'debug', destination: new LogCapture() }) });
    await other.start();
  });

  afterAll(async () => {
    await other?.stop().catch(() => undefined);
    await stack?.close();
    await upstream?.close();
    await redis?.close();
  });

  test('another replica\'s connected_agents shows the registration at once (not at the next refresh), and not once the agent is gone', async () => {
    await stack.startAgent();
    await stack.waitForAgent(2);
    expect(other.registry.connectionCount).toBe(0);
    // The refresh period is 30 s: what arrives sooner was written when the agent registered.
    let conns: Connection[] = [];
    await waitFor(async () => {
      conns = await connectedAgents(other.addresses.api!);
      return conns.length === 2 && conns.every((c) => c.agent_meta.registered_at !== null);
    }, 'replica B to show both registered connections held by replica A', 15_000);
    expect(conns[0]!.agent_meta).toMatchObject({ pod_uid: POD_UID, architecture: goArchitecture(), kubernetes_version: FAKE_KUBERNETES_VERSION, extra_telemetry: { installation_method: 'helm', helm_chart_version: '0.1.0' } });
    await stack.agent!.stop();
    await waitFor(async () => (await connectedAgents(other.addresses.api!)).length === 0, 'replica B to forget the connections of the stopped agent', 15_000);
  });
});

describe('registration in GitLab mode', () => {
  const AGENT_TOKEN = 'glagent-registration-0123456789abcdefghij';
  const PROJECT = 42;
  let gl: FakeGitLab;
  let upstream: FakeKubeApi;
  let stack: Stack;

  beforeAll(async () => {
    gl = await startFakeGitLab({ tls: true });
    gl.addProject({ id: PROJECT, fullPath: 'acme/clusters' });
    gl.addAgent({ id: 1, name: 'prod', projectId: PROJECT, token: AGENT_TOKEN });
    gl.addUser({ id: 101, username: 'bob', pat: ['glpat-bob'] });
    gl.setUserAccess(1, 101, { access_as: { agent: {} }, configProjectId: PROJECT });
    gl.addCiJob({ token: 'job-token-1', jobId: 555, pipelineId: 66, projectId: 43, groups: [], user: { id: 100, username: 'alice', roles_in_project: ['developer'] }, allowedAgents: [{ id: 1, configProjectId: PROJECT, configuration: {} }] });
    // GitLab fails the first report: it must come again, once.
    gl.failNext('/internal/kubernetes/agent_events', 503, 1);
    upstream = await startFakeKubeApi({ handler: (req, res) => (req.url === '/version' ? res.end(JSON.stringify({ gitVersion: 'v1.27.4' })) : res.end('ok')) });
    stack = await startStack({
      upstream,
      agent: agentOptions,
      gitlab: { url: gl.url, caPem: gl.caPem, secretFileContent: gl.secretFileContent, repositoryToken: gl.repositoryToken, agentToken: AGENT_TOKEN },
      kas: { observability: { usage_report_period: '1s' } },
    });
  });

  afterAll(async () => {
    await stack?.close();
    await upstream?.close();
    await gl?.close();
  });

  const all = (name: keyof AgentEventsPost['events']): unknown[] => gl.agentEvents.flatMap((p): unknown[] => p.events[name] ?? []);

  test('register_agent_at_kas reaches GitLab after a 503, once, with the agent\'s facts', async () => {
    await stack.waitForAgent(2);
    await waitFor(() => all('register_agent_at_kas').length > 0, 'a register_agent_at_kas event at GitLab', 15_000);
    const calls = gl.callsTo('/internal/kubernetes/agent_events');
    expect(calls[0]!.status).toBe(503);
    expect(calls.every((c) => c.status === 503 || c.jwtOk === true)).toBe(true);
    // The failed report's content came again in the next one.
    expect(calls[1]!.body).toEqual(calls[0]!.body);
    // Two connections registered the same facts: one entry. A few periods later, still one.
    await new Promise((r) => setTimeout(r, 2500));
    expect(all('register_agent_at_kas')).toEqual([
      { project_id: PROJECT, agent_id: 1, agent_version: BUILD_INFO.version, architecture: goArchitecture(), kubernetes_version: 'v1.27.4', extra_telemetry: { helm_chart_version: '0.1.0', installation_method: 'helm' } },
    ]);
  });

  test('the proxy\'s unique users by access kind, with their project', async () => {
    for (let i = 0; i < 2; i++) {
      await readAll(await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer pat:1:glpat-bob' }));
      await readAll(await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer ci:1:job-token-1' }));
    }
    await waitFor(() => all('k8s_api_proxy_requests_unique_users_via_pat_access').length > 0 && all('k8s_api_proxy_requests_unique_users_via_ci_access').length > 0, 'unique users events at GitLab', 15_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(all('k8s_api_proxy_requests_unique_users_via_pat_access')).toEqual([{ user_id: 101, project_id: PROJECT }]);
    expect(all('k8s_api_proxy_requests_unique_users_via_ci_access')).toEqual([{ user_id: 100, project_id: 43 }]);
    expect(all('k8s_api_proxy_requests_unique_users_via_user_access')).toEqual([]);
  });
});
