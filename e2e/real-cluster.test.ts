/**
 * End to end against a real Kubernetes API server (standalone mode): the kas and agentk charts are
 * rendered and applied to a real kube-apiserver v1.20 (etcd behind it); kas and agentk then run as
 * real child processes from the Deployments the charts stored (their volumes written from the
 * Secrets and ConfigMaps the API server holds, the command from the images' ENTRYPOINT), agentk with
 * a token of the chart's ServiceAccount from the TokenRequest API; and the real kubectl talks to
 * kas over TLS with `--token pat:<agent-id>:<token>`.
 *
 * What only a real API server shows: real RBAC (the chart's rules, the API server's own 403), real
 * impersonation checks, server-side apply, watches, paginated LISTs with continue tokens.
 * exec/attach/port-forward need a kubelet and stay on the fake API server
 * (test/integration/kubectl.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { generateSelfSignedCertificate } from '../src/shared/tls-cert.js';
import { Kubectl, assertStdout, assertSucceeded, explain, type KubectlResult } from '../test/support/kubectl.js';
import { startCluster, type Cluster } from './support/cluster.js';
import { CHARTS, Helm } from './support/helm.js';
import { localPod, type LocalPod } from './support/pod.js';
import { listenerAddress, startProcess, type ManagedProcess } from './support/processes.js';
import { waitFor } from '../test/support/wait.js';

const KAS_NS = 'gitlab-kas';
const AGENT_NS = 'gitlab-agent';
const WORK_NS = 'e2e-work';
const BIG_NS = 'e2e-big';
const IMP_NS = 'e2e-imp';
const BIG_COUNT = 3000;
const ALICE = 'alice@example.com';
const VIEWERS = 'e2e-viewers';

const agentToken = `glagent-${randomBytes(16).toString('hex')}`;
const adminProxyToken = randomBytes(16).toString('hex');
const aliceProxyToken = randomBytes(16).toString('hex');

let cluster: Cluster;
let helm: Helm;
let admin: Kubectl;
let viaKas: Kubectl;
let kasPod: LocalPod | null = null;
let agentPod: LocalPod | null = null;
let kas: ManagedProcess | null = null;
let agentk: ManagedProcess | null = null;
let proxyUrl = '';
let agentObservability = '';
let serviceAccountToken = '';
let kasCa = '';

function must(r: KubectlResult): KubectlResult {
  assertSucceeded(r);
  return r;
}

async function applyChart(chart: 'kas' | 'agentk', namespace: string, values: Record<string, unknown>): Promise<void> {
  must(await admin.run(['create', 'namespace', namespace]));
  const rendered = await helm.template(CHARTS[chart], { release: chart, namespace, values });
  must(await admin.run(['apply', '-f', '-'], { input: rendered }));
}

async function httpGet(url: string): Promise<{ status: number; body: string }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text() };
}


/** The sum of agentk_streams_served_total over every outcome: how many streams agentk handled. */
async function agentStreamsServed(): Promise<number> {
  const { body } = await httpGet(`http://${agentObservability}/metrics`);
  return body
    .split('\n')
    .filter((l) => l.startsWith('agentk_streams_served_total'))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

/** A request through kas with a proxy token, for comparing raw answers with the API server's. */
function viaKasRaw(apiPath: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(new URL(`${proxyUrl}${apiPath.replace(/^\//, '')}`), { ca: kasCa, headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

function mapStrings<T>(value: T, map: (s: string) => string): T {
  if (typeof value === 'string') return map(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => mapStrings(v, map)) as T;
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapStrings(v, map)])) as T;
  return value;
}

beforeAll(async () => {
  helm = await Helm.create();
  cluster = await startCluster();
  admin = await Kubectl.create({ server: cluster.url, caPem: cluster.caPem, token: cluster.adminToken });

  // kas: the chart with one agent, two proxy tokens and TLS on its own listeners; its Deployment
  // runs here as a process (the API server has no kubelet).
  await applyChart('kas', KAS_NS, {
    standalone: {
      agents: [{ id: 1, name: 'e2e-cluster', token: agentToken }],
      proxyTokens: [
        { name: 'admin', token: adminProxyToken, agents: [1], accessAs: { agent: {} } },
        { name: 'alice', token: aliceProxyToken, agents: [1], accessAs: { impersonate: { username: ALICE, groups: [VIEWERS] } } },
      ],
    },
    tls: { enabled: true, secretName: 'kas-tls' },
  });
  const kasCert = await generateSelfSignedCertificate();
  kasCa = kasCert.cert;
  const certFile = path.join(admin.dir, 'kas-tls.crt');
  const keyFile = path.join(admin.dir, 'kas-tls.key');
  writeFileSync(certFile, kasCert.cert);
  writeFileSync(keyFile, kasCert.key);
  must(await admin.run(['create', 'secret', 'tls', 'kas-tls', '-n', KAS_NS, `--cert=${certFile}`, `--key=${keyFile}`]));

  kasPod = await localPod(cluster, KAS_NS, 'kas', 'Dockerfile.kas');
  const configArg = kasPod.command.find((a) => a.startsWith('--config='))!;
  const configFile = configArg.slice('--config='.length);
  const config = parseYaml(readFileSync(configFile, 'utf8')) as { agent: { listen: { address: string }; kubernetes_api: { listen: { address: string }; url_path_prefix: string } }; observability: { listen: { address: string } } };
  // In a pod each listener has the pod's own network namespace; here they share the host's
  // loopback. And the files the configuration names are on the pod's volumes.
  config.agent.listen.address = '127.0.0.1:0';
  config.agent.kubernetes_api.listen.address = '127.0.0.1:0';
  config.observability.listen.address = '127.0.0.1:0';
  writeFileSync(configFile, stringifyYaml(mapStrings(config, kasPod.localize)));
  kas = startProcess('kas', kasPod.command[0]!, kasPod.command.slice(1), { env: { PATH: process.env.PATH, ...kasPod.env } });
  const [agentAddress, apiAddress] = await Promise.all([
    kas.waitForLine(listenerAddress('agent'), 'kas to listen for agents'),
    kas.waitForLine(listenerAddress('kubernetes_api'), 'kas to listen for Kubernetes API requests'),
  ]);
  proxyUrl = `https://${apiAddress}${config.agent.kubernetes_api.url_path_prefix}`;

  // agentk: the chart (default RBAC plus impersonation rights), pointed at kas.
  await applyChart('agentk', AGENT_NS, {
    config: { kasAddress: `wss://${agentAddress}/`, token: agentToken, kasCaCert: kasCa },
    rbac: { impersonate: { enabled: true } },
  });
  agentPod = await localPod(cluster, AGENT_NS, 'agentk', 'Dockerfile.agentk');
  serviceAccountToken = await cluster.serviceAccountToken(AGENT_NS, agentPod.serviceAccountName!);
  const kubeconfig = await admin.writeKubeconfig(path.join(admin.dir, 'agentk-kubeconfig'), { server: cluster.url, caPem: cluster.caPem, token: serviceAccountToken });
  const agentArgs = agentPod.command.slice(1).map((a) => (a.startsWith('--observability-listen-address=') ? '--observability-listen-address=127.0.0.1:0' : a));
  agentk = startProcess('agentk', agentPod.command[0]!, [...agentArgs, `--kubeconfig=${kubeconfig}`], { env: { PATH: process.env.PATH, ...agentPod.env } });
  agentObservability = await agentk.waitForLine(listenerAddress('observability'), 'agentk to serve /readiness');
  await waitFor(
    async () => (await httpGet(`http://${agentObservability}/readiness`).catch(() => null))?.status === 200,
    'agentk to be connected to kas (/readiness 200)',
    30_000,
    { intervalMs: 100, describe: () => `${agentk!.describe()}\n${kas!.describe()}` },
  );

  viaKas = await Kubectl.create({ server: proxyUrl, caPem: kasCa, token: `pat:1:${adminProxyToken}` });

  // Rights beyond the chart's read-only default, granted the way an operator would: write access
  // to one namespace for the agent's ServiceAccount; and for the impersonated user and group, a
  // little in another.
  for (const ns of [WORK_NS, BIG_NS, IMP_NS]) must(await admin.run(['create', 'namespace', ns]));
  // (A Role of its own: the built-in edit ClusterRole is aggregated by the controller manager, which
  // does not run here, so it has no rules.)
  must(await admin.run(['create', 'role', 'write-configmaps', '-n', WORK_NS, '--verb=get,list,watch,create,update,patch,delete', '--resource=configmaps']));
  must(await admin.run(['create', 'rolebinding', 'agentk-writes-configmaps', '-n', WORK_NS, '--role=write-configmaps', `--serviceaccount=${AGENT_NS}:${agentPod.serviceAccountName}`]));
  must(await admin.run(['create', 'role', 'read-configmaps', '-n', IMP_NS, '--verb=get,list,watch', '--resource=configmaps']));
  must(await admin.run(['create', 'rolebinding', 'alice-reads-configmaps', '-n', IMP_NS, '--role=read-configmaps', `--user=${ALICE}`]));
  must(await admin.run(['create', 'role', 'list-pods', '-n', IMP_NS, '--verb=list', '--resource=pods']));
  must(await admin.run(['create', 'rolebinding', 'viewers-list-pods', '-n', IMP_NS, '--role=list-pods', `--group=${VIEWERS}`]));
  must(await admin.run(['create', 'configmap', 'for-alice', '-n', IMP_NS, '--from-literal=a=b']));
}, 180_000);

afterEach(() => {
  admin?.killAll();
  viaKas?.killAll();
});

afterAll(async () => {
  await viaKas?.cleanup();
  await agentk?.stop();
  await kas?.stop();
  agentPod?.cleanup();
  kasPod?.cleanup();
  await admin?.cleanup();
  await cluster?.stop();
  await helm?.cleanup();
}, 60_000);

describe('the charts in a real API server', () => {
  test('the Deployments are stored, and no pod runs (there is no kubelet): kas and agentk run here as processes', async () => {
    const r = must(await admin.run(['get', 'deployments', '-A', '-o', 'custom-columns=NS:.metadata.namespace,NAME:.metadata.name,READY:.status.readyReplicas']));
    expect(r.stdout).toMatch(new RegExp(`^${KAS_NS}\\s+kas\\s+<none>`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^${AGENT_NS}\\s+agentk\\s+<none>`, 'm'));
    expect(kas?.running()).toBe(true);
    expect(agentk?.running()).toBe(true);
  });
});

describe('kubectl through kas and agentk to a real API server', () => {
  test('get ns', async () => {
    const r = must(await viaKas.run(['get', 'ns']));
    for (const ns of ['default', 'kube-system', KAS_NS, AGENT_NS, WORK_NS]) {
      if (!new RegExp(`^${ns}\\s+Active`, 'm').test(r.stdout)) throw new Error(`namespace ${ns} missing: ${explain(r)}`);
    }
  });

  test('get -w shows a ConfigMap created while the watch is open', async () => {
    must(await admin.run(['create', 'configmap', 'before-watch', '-n', WORK_NS]));
    const watch = viaKas.start(['get', 'configmaps', '-n', WORK_NS, '-w']);
    await watch.waitFor(/^before-watch\s/m, 'the initial list of the watch');
    must(await admin.run(['create', 'configmap', 'during-watch', '-n', WORK_NS, '--from-literal=x=y']));
    await watch.waitFor(/^during-watch\s+1\s/m, 'the watch event of the new ConfigMap');
    expect(watch.running()).toBe(true);
  });

  test('create: the object reaches the API server', async () => {
    assertStdout(await viaKas.run(['create', 'configmap', 'created-through-kas', '-n', WORK_NS, '--from-literal=greeting=hello']), 'configmap/created-through-kas created');
    const stored = await cluster.request('GET', `/api/v1/namespaces/${WORK_NS}/configmaps/created-through-kas`);
    expect(stored.status).toBe(200);
    expect((stored.json as { data: Record<string, string> }).data).toEqual({ greeting: 'hello' });
  });

  test('apply --server-side: created, then updated, with the field manager recorded by the API server', async () => {
    const manifest = (value: string) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applied', namespace: WORK_NS }, data: { key: value } });
    assertStdout(await viaKas.run(['apply', '--server-side', '--field-manager=e2e-test', '-f', '-'], { input: manifest('v1') }), 'configmap/applied serverside-applied');
    assertStdout(await viaKas.run(['apply', '--server-side', '--field-manager=e2e-test', '-f', '-'], { input: manifest('v2') }), 'configmap/applied serverside-applied');
    const stored = (await cluster.request('GET', `/api/v1/namespaces/${WORK_NS}/configmaps/applied`)).json as { data: Record<string, string>; metadata: { managedFields: Array<{ manager: string; operation: string }> } };
    expect(stored.data).toEqual({ key: 'v2' });
    expect(stored.metadata.managedFields.map((f) => [f.manager, f.operation])).toEqual([['e2e-test', 'Apply']]);
  });

  test('delete: the object is gone from the API server', async () => {
    must(await admin.run(['create', 'configmap', 'to-delete', '-n', WORK_NS]));
    assertStdout(await viaKas.run(['delete', 'configmap', 'to-delete', '-n', WORK_NS]), 'configmap "to-delete" deleted');
    expect((await cluster.request('GET', `/api/v1/namespaces/${WORK_NS}/configmaps/to-delete`)).status).toBe(404);
  });

  test(`a large LIST: ${BIG_COUNT} ConfigMaps, paginated and in one response`, async () => {
    // Created straight at the API server, a few requests at a time.
    const payload = 'x'.repeat(1024);
    let next = 0;
    const worker = async () => {
      while (next < BIG_COUNT) {
        const i = next++;
        const r = await cluster.request('POST', `/api/v1/namespaces/${BIG_NS}/configmaps`, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `cm-${String(i).padStart(5, '0')}` }, data: { payload } });
        if (r.status !== 201) throw new Error(`creating ConfigMap ${i} answered ${r.status}: ${r.body.toString()}`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const expected = Array.from({ length: BIG_COUNT }, (_, i) => `configmap/cm-${String(i).padStart(5, '0')}`);
    // kubectl's default: pages of 500 with continue tokens.
    const paged = must(await viaKas.run(['get', 'configmaps', '-n', BIG_NS, '-o', 'name']));
    expect(paged.stdout.split('\n').filter(Boolean)).toEqual(expected);
    // One response of several MiB, streamed through the tunnel with flow control.
    const whole = must(await viaKas.run(['get', 'configmaps', '-n', BIG_NS, '--chunk-size=0', '-o', 'jsonpath={range .items[*]}{.metadata.name}={.data.payload}{"\\n"}{end}']));
    const lines = whole.stdout.split('\n').filter(Boolean);
    expect(lines.length).toBe(BIG_COUNT);
    expect(lines.every((l) => l.endsWith(`=${payload}`))).toBe(true);
  }, 120_000);

  test("a request the agent's RBAC denies gets the API server's own 403, intact", async () => {
    const r = await viaKas.run(['get', 'secrets', '-n', 'kube-system']);
    const who = `system:serviceaccount:${AGENT_NS}:${agentPod!.serviceAccountName}`;
    if (r.code === 0 || !r.stderr.includes(`secrets is forbidden: User "${who}" cannot list resource "secrets" in API group "" in the namespace "kube-system"`)) {
      throw new Error(`expected the API server's Forbidden for ${who}: ${explain(r)}`);
    }
    // Byte for byte what the API server answers that service account directly.
    const direct = await cluster.request('GET', '/api/v1/namespaces/kube-system/secrets', undefined, { token: serviceAccountToken });
    const proxied = await viaKasRaw('/api/v1/namespaces/kube-system/secrets', `pat:1:${adminProxyToken}`);
    expect(proxied.status).toBe(403);
    expect(direct.status).toBe(403);
    expect(JSON.parse(proxied.body)).toEqual(direct.json);
  });

  test("access_as agent: a client's own --as goes to the API server, which checks the agent's impersonate rights", async () => {
    assertStdout(await viaKas.run(['auth', 'can-i', 'list', 'configmaps', '-n', IMP_NS, `--as=${ALICE}`]), /^yes$/m);
    const denied = await viaKas.run(['get', 'secrets', '-n', IMP_NS, `--as=${ALICE}`]);
    if (denied.code === 0 || !denied.stderr.includes(`User "${ALICE}" cannot list resource "secrets"`)) throw new Error(`expected Forbidden for ${ALICE}: ${explain(denied)}`);
  });
});

describe('a proxy token with access_as impersonate (user and group)', () => {
  let alice: Kubectl;
  beforeAll(async () => {
    alice = await Kubectl.create({ server: proxyUrl, caPem: kasCa, token: `pat:1:${aliceProxyToken}` });
  });
  afterAll(async () => {
    await alice?.cleanup();
  });

  test.each<{ args: string[]; answer: 'yes' | 'no'; why: string }>([
    { args: ['list', 'configmaps', '-n', IMP_NS], answer: 'yes', why: 'a RoleBinding to the user' },
    { args: ['list', 'pods', '-n', IMP_NS], answer: 'yes', why: 'a RoleBinding to the group' },
    { args: ['create', 'configmaps', '-n', IMP_NS], answer: 'no', why: 'the Role allows reading only' },
    { args: ['list', 'configmaps', '-n', WORK_NS], answer: 'no', why: 'no binding in that namespace' },
    { args: ['list', 'secrets', '-n', 'kube-system'], answer: 'no', why: 'no binding at all' },
  ])('auth can-i $args.0 $args.1 $args.3 is $answer ($why)', async ({ args, answer }) => {
    const r = await alice.run(['auth', 'can-i', ...args]);
    if (r.stdout.trim() !== answer || r.code !== (answer === 'yes' ? 0 : 1)) throw new Error(`expected "${answer}": ${explain(r)}`);
  });

  test('kubectl acts as that identity: allowed reads work, the rest is the API server refusing that user', async () => {
    assertStdout(await alice.run(['get', 'configmaps', '-n', IMP_NS]), /^for-alice\s+1\s/m);
    const r = await alice.run(['get', 'configmaps', '-n', WORK_NS]);
    if (r.code === 0 || !r.stderr.includes(`configmaps is forbidden: User "${ALICE}" cannot list resource "configmaps"`)) throw new Error(`expected Forbidden for ${ALICE}: ${explain(r)}`);
  });

  test("the client's own --as is refused by kas and never reaches agentk", async () => {
    const before = await agentStreamsServed();
    const r = await alice.run(['get', 'configmaps', '-n', IMP_NS, '--as=admin']);
    if (r.code === 0 || !/nested impersonation is not allowed/.test(r.stderr)) throw new Error(`expected kas to refuse the nested impersonation: ${explain(r)}`);
    expect(await agentStreamsServed()).toBe(before);
  });
});
