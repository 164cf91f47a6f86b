/**
 * Agent registration against a real Kubernetes API server (v1.20.2): agentk runs as a real process
 * from the Deployment the agentk chart stored (its POD_UID from the downward API, its telemetry
 * variables from the chart), with a token of the chart's ServiceAccount; kas runs in-process in
 * GitLab mode against the fake GitLab. The real API server's version reaches the API for GitLab's
 * connected_agents and GitLab's agent_events.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { goArchitecture } from '../src/agent/registration/telemetry.js';
import { BUILD_INFO } from '../src/shared/version.js';
import { gitlabToKasJwt, startFakeGitLab, type FakeGitLab } from '../test/support/fake-gitlab.js';
import { Kubectl, assertSucceeded } from '../test/support/kubectl.js';
import { startStack, type Stack } from '../test/support/stack.js';
import { waitFor } from '../test/support/wait.js';
import { KUBE_VERSION, startCluster, type Cluster } from './support/cluster.js';
import { CHARTS, Helm, REPO_ROOT } from './support/helm.js';
import { localPod, type LocalPod } from './support/pod.js';
import { listenerAddress, startProcess, type ManagedProcess } from './support/processes.js';

const AGENT_NS = 'gitlab-agent';
const PROJECT = 42;
const agentToken = `glagent-${randomBytes(16).toString('hex')}`;
const chartVersion = (parseYaml(readFileSync(path.join(REPO_ROOT, 'helm/agentk/Chart.yaml'), 'utf8')) as { version: string }).version;

let cluster: Cluster;
let helm: Helm;
let admin: Kubectl;
let gl: FakeGitLab;
let stack: Stack;
let agentPod: LocalPod | null = null;
let agentk: ManagedProcess | null = null;

beforeAll(async () => {
  helm = await Helm.create();
  cluster = await startCluster();
  admin = await Kubectl.create({ server: cluster.url, caPem: cluster.caPem, token: cluster.adminToken });
  gl = await startFakeGitLab({ tls: true });
  gl.addProject({ id: PROJECT, fullPath: 'acme/clusters' });
  gl.addAgent({ id: 1, name: 'e2e-cluster', projectId: PROJECT, token: agentToken });
  // kas in GitLab mode; the upstream of startStack's own agentk is unused (it is not started).
  stack = await startStack({
    upstream: { url: cluster.url, caPem: cluster.caPem, token: cluster.adminToken },
    startAgent: false,
    gitlab: { url: gl.url, caPem: gl.caPem, secretFileContent: gl.secretFileContent, repositoryToken: gl.repositoryToken, agentToken },
    kas: { observability: { usage_report_period: '1s' } },
  });

  assertSucceeded(await admin.run(['create', 'namespace', AGENT_NS]));
  const rendered = await helm.template(CHARTS.agentk, { release: 'agentk', namespace: AGENT_NS, values: { config: { kasAddress: `wss://${stack.kas.addresses.agent}/`, token: agentToken, kasCaCert: stack.proxyCa } } });
  assertSucceeded(await admin.run(['apply', '-f', '-'], { input: rendered }));
  agentPod = await localPod(cluster, AGENT_NS, 'agentk', 'Dockerfile.agentk');
  const token = await cluster.serviceAccountToken(AGENT_NS, agentPod.serviceAccountName!);
  const kubeconfig = await admin.writeKubeconfig(path.join(admin.dir, 'agentk-kubeconfig'), { server: cluster.url, caPem: cluster.caPem, token });
  const args = agentPod.command.slice(1).map((a) => (a.startsWith('--observability-listen-address=') ? '--observability-listen-address=127.0.0.1:0' : a));
  agentk = startProcess('agentk', agentPod.command[0]!, [...args, `--kubeconfig=${kubeconfig}`], { env: { PATH: process.env.PATH, ...agentPod.env } });
  await agentk.waitForLine(listenerAddress('observability'), 'agentk to start');
  await waitFor(() => stack.kas.registry.connections(1).length >= 1, 'agentk to connect to kas', 30_000, { describe: () => agentk!.describe() });
}, 180_000);

afterAll(async () => {
  await agentk?.stop();
  agentPod?.cleanup();
  await stack?.close();
  await gl?.close();
  await admin?.cleanup();
  await cluster?.stop();
  await helm?.cleanup();
}, 60_000);

test('connected_agents shows the real API server\'s version and the pod the chart describes', async () => {
  type Meta = Record<string, unknown>;
  let metas: Meta[] = [];
  await waitFor(async () => {
    const res = await fetch(`http://${stack.kas.addresses.api}/api/v1/connected_agents?agent_id=1`, { headers: { authorization: `Bearer ${gitlabToKasJwt(gl.secret)}` } });
    const body = (await res.json()) as { agents: Array<{ connections: Array<{ agent_meta: Meta }> }> };
    metas = body.agents[0]?.connections.map((c) => c.agent_meta) ?? [];
    return metas.length === 2 && metas.every((m) => m.registered_at !== null);
  }, 'both connections of the agentk process registered', 30_000, { describe: () => agentk!.describe() });
  for (const meta of metas) {
    expect(meta).toMatchObject({
      version: BUILD_INFO.version,
      pod_namespace: AGENT_NS,
      pod_name: agentPod!.podName,
      pod_uid: agentPod!.podUid,
      architecture: goArchitecture(),
      kubernetes_version: KUBE_VERSION,
      extra_telemetry: { installation_method: 'helm', helm_chart_version: chartVersion },
    });
  }
});

test('GitLab receives register_agent_at_kas with the real API server\'s version', async () => {
  const registrations = () => gl.agentEvents.flatMap((p) => p.events.register_agent_at_kas ?? []);
  await waitFor(() => registrations().length > 0, 'register_agent_at_kas at GitLab', 30_000);
  expect(registrations()).toEqual([
    { project_id: PROJECT, agent_id: 1, agent_version: BUILD_INFO.version, architecture: goArchitecture(), kubernetes_version: KUBE_VERSION, extra_telemetry: { helm_chart_version: chartVersion, installation_method: 'helm' } },
  ]);
  expect(gl.callsTo('/internal/kubernetes/agent_events').every((c) => c.jwtOk === true && c.status === 204)).toBe(true);
});
