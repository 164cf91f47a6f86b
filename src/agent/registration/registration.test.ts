/**
 * agentk's registration against a fake kas: it registers on every session with who it is (pod,
 * architecture, the API server's version, telemetry from the environment), again every period with
 * the version asked anew (an upgrade of the cluster shows), and against a kas that does not serve
 * agent_info it says so once and goes on.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeAgentInfo, encodeAgentInfoReply, type AgentInfo, AGENT_INFO_STREAM } from '../../protocol/agent-info.js';
import type { TunnelStream } from '../../protocol/stream.js';
import { BUILD_INFO } from '../../shared/version.js';
import type { Agentk } from '../app.js';
import { loadApiServerConfig } from '../kubernetes-api/api-server.js';
import { httpGet, startTestAgent } from '../testing/agent-fixture.js';
import { FakeKas } from '../testing/fake-kas.js';
import { startFakeKubeApi, type FakeKubeApi } from '../../../test/support/fake-kube-api.js';
import type { LogCapture } from '../../../test/support/logs.js';
import { readAll } from '../../../test/support/streams.js';
import { waitFor } from '../../../test/support/wait.js';
import { goArchitecture } from './telemetry.js';

const TOKEN = 'registration-token-7f1c';
let dir: string;
let api: FakeKubeApi;
let apiVersion = 'v1.28.3';
let kas: FakeKas | null = null;
let agent: Agentk | null = null;
let logs: LogCapture;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentk-registration-'));
  api = await startFakeKubeApi({
    tls: false,
    token: 'sa-token',
    handler: (req, res) => {
      if (req.url === '/version') res.setHeader('content-type', 'application/json').end(JSON.stringify({ major: '1', gitVersion: apiVersion }));
      else res.writeHead(404).end();
    },
  });
});

afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await agent?.stop();
  await kas?.close();
  agent = null;
  kas = null;
});

/** A kas that serves agent_info and keeps what each registration said, by session. */
async function registeringKas(): Promise<{ received: Array<{ session: unknown; info: AgentInfo }> }> {
  const received: Array<{ session: unknown; info: AgentInfo }> = [];
  kas = await FakeKas.start({
    token: TOKEN,
    features: [AGENT_INFO_STREAM],
    onStream: (stream: TunnelStream, session) => {
      void readAll(stream).then((data) => {
        received.push({ session, info: decodeAgentInfo(data) });
        stream.reply(encodeAgentInfoReply({ registered: true }), { end: true });
      });
    },
  });
  return { received };
}

test('registers on every session with its pod, architecture, the API server\'s version and telemetry; again every period', async () => {
  const { received } = await registeringKas();
  ({ agent, logs } = await startTestAgent({
    kasAddress: kas!.url,
    token: TOKEN,
    kasConnections: 2,
    apiServer: loadApiServerConfig({ kubeconfig: api.writeKubeconfig(dir), context: 'fake' }),
    podUid: '7d4f2c1e-0000-4000-8000-000000000001',
    telemetryEnvironment: { GITLAB_AGENT_TELEMETRY_INSTALLATION_METHOD: 'helm', GITLAB_AGENT_TELEMETRY_BAD_VALUE: 'x'.repeat(300), PATH: '/usr/bin' },
    registrationPeriodMs: 300,
  }));
  const k = kas!;
  await k.waitFor(() => new Set(received.map((r) => r.session)).size === 2, 'a registration on each of the 2 sessions');
  expect(received[0]!.info).toEqual({
    version: BUILD_INFO.version,
    commit: BUILD_INFO.commit,
    pod_namespace: 'gitlab-agent',
    pod_name: 'agentk-test-pod',
    pod_uid: '7d4f2c1e-0000-4000-8000-000000000001',
    architecture: goArchitecture(),
    kubernetes_version: 'v1.28.3',
    extra_telemetry: { installation_method: 'helm' },
  });
  expect(logs.text).toContain('GITLAB_AGENT_TELEMETRY_BAD_VALUE');

  // The cluster is upgraded: the next periodic report says so, without a reconnect.
  apiVersion = 'v1.29.0';
  const sessions = k.accepted.length;
  await waitFor(() => received.some((r) => r.info.kubernetes_version === 'v1.29.0'), 'a periodic registration with the new Kubernetes version', 10_000);
  expect(k.accepted.length).toBe(sessions);
  const metrics = await httpGet(agent!.observabilityAddress, '/metrics');
  expect(metrics.body).toMatch(/agentk_registrations_total\{result="ok"\} [2-9]/);
}, 20_000);

test('against a kas that does not serve agent_info (an older one): one line at info, nothing sent, agentk works on', async () => {
  const opened: string[] = [];
  kas = await FakeKas.start({ token: TOKEN, onStream: (stream) => opened.push(String(stream.peerHead?.t)) });
  ({ agent, logs } = await startTestAgent({
    kasAddress: kas.url,
    token: TOKEN,
    kasConnections: 2,
    apiServer: loadApiServerConfig({ kubeconfig: api.writeKubeconfig(dir), context: 'fake' }),
    registrationPeriodMs: 100,
  }));
  const k = kas;
  await k.waitFor(() => k.openSessions.length === 2, 'agentk to open 2 sessions');
  // Several periods pass.
  await new Promise((r) => setTimeout(r, 600));
  const told = logs.entries.filter((e) => typeof e.msg === 'string' && e.msg.includes('does not serve agent registration'));
  expect(told).toHaveLength(1);
  expect(told[0]!.level).toBe(30);
  expect(opened).toEqual([]);
  expect(agent.openSessions).toBe(2);
  const answer = await k.request({ method: 'GET', path: '/version', headers: [], impersonate: null });
  expect(answer.status).toBe(200);
}, 20_000);
