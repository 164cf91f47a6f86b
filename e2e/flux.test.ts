/**
 * Flux reconcile-on-push against a real kube-apiserver: two kas replicas in GitLab mode sharing a
 * real Redis (behind a TCP balancer), a fake GitLab, an in-process agentk. The test installs
 * minimal Flux CRDs (GitRepository, Receiver) and plays Flux's notification-controller: a loop that
 * sets `status.webhookPath` on Receivers, and an HTTP server that checks each call's
 * `X-Signature` with the token of the Secret agentk made. A `POST /api/v1/git_push_event` to
 * either replica must reach the receiver signed, also after an agentk restart and after kas
 * replica restarts; a project the agent may not read is refused; without the CRDs agentk idles and
 * says so once.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KasApp } from '../src/broker/app.js';
import { verifyGenericHmac } from '../src/agent/flux/signature.js';
import { createLogger } from '../src/shared/logger.js';
import { startBalancer } from '../test/support/balancer.js';
import { gitlabToKasJwt, startFakeGitLab, type FakeGitLab } from '../test/support/fake-gitlab.js';
import { LogCapture } from '../test/support/logs.js';
import { startRedis, type TestRedis } from '../test/support/redis.js';
import { startStack, type Stack } from '../test/support/stack.js';
import { waitFor } from '../test/support/wait.js';
import { startCluster, type Cluster } from './support/cluster.js';

const AGENT_TOKEN = 'glagent-flux-e2e-token-0123456789abcdefghijklmnopqrstuvwxyz01';
const CONFIG_PROJECT = 5;
const APP_PROJECT = { id: 7, fullPath: 'acme/app' };
const PRIVATE_PROJECT = { id: 9, fullPath: 'acme/private' };
const GITLAB_URL = 'https://gitlab.example.com';

interface Call {
  path: string;
  receiver: string | null;
  valid: boolean;
  body: string;
}

let cluster: Cluster;
let redis: TestRedis;
let gl: FakeGitLab;
let stack: Stack;
let receiverServer: http.Server;
let receiverUrl: string;
let balancer: { address: string; close(): Promise<void> };
let statusLoop: NodeJS.Timeout | null = null;
let dir = '';
const replicas: KasApp[] = [];
const calls: Call[] = [];

function crd(group: string, kind: string, plural: string, versions: string[]) {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${group}` },
    spec: {
      group,
      scope: 'Namespaced',
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: versions.map((name, i) => ({
        name,
        served: true,
        storage: i === 0,
        subresources: { status: {} },
        schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
      })),
    },
  };
}

async function ok(res: Promise<{ status: number; json: unknown }>, what: string): Promise<unknown> {
  const r = await res;
  if (r.status < 200 || r.status >= 300) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

interface Receiver {
  metadata: { name: string; namespace: string; resourceVersion: string; ownerReferences?: Array<{ kind: string; name: string; uid: string }>; labels?: Record<string, string> };
  spec: { type: string; secretRef: { name: string }; resources: Array<{ kind: string; name: string; apiVersion: string }> };
  status?: { webhookPath?: string };
}

async function receivers(): Promise<Receiver[]> {
  const r = await cluster.request('GET', '/apis/notification.toolkit.fluxcd.io/v1/receivers');
  if (r.status !== 200) return [];
  return (r.json as { items: Receiver[] }).items;
}

async function secretToken(namespace: string, name: string): Promise<string | null> {
  const r = await cluster.request('GET', `/api/v1/namespaces/${namespace}/secrets/${name}`);
  if (r.status !== 200) return null;
  const token = (r.json as { data?: { token?: string } }).data?.token;
  return token ? Buffer.from(token, 'base64').toString('utf8') : null;
}

/** What the notification-controller does for a Receiver: a webhook path from the token, name and namespace. */
async function setWebhookPaths(): Promise<void> {
  for (const r of await receivers()) {
    if (r.status?.webhookPath) continue;
    const token = await secretToken(r.metadata.namespace, r.spec.secretRef.name);
    if (!token) continue;
    const path = `/hook/${createHash('sha256').update(token + r.metadata.name + r.metadata.namespace).digest('hex')}`;
    await cluster.request('PUT', `/apis/notification.toolkit.fluxcd.io/v1/namespaces/${r.metadata.namespace}/receivers/${r.metadata.name}/status`, { ...r, status: { webhookPath: path } });
  }
}

async function gitRepository(namespace: string, name: string, url: string, version = 'v1'): Promise<void> {
  await ok(cluster.request('POST', `/apis/source.toolkit.fluxcd.io/${version}/namespaces/${namespace}/gitrepositories`, { apiVersion: `source.toolkit.fluxcd.io/${version}`, kind: 'GitRepository', metadata: { name, namespace }, spec: { url, interval: '10m', ref: { branch: 'main' } } }), `create GitRepository ${name}`);
}

function push(kas: KasApp, project: { id: number; fullPath: string }, secret: Uint8Array = gl.secret): Promise<number> {
  const body = Buffer.from(JSON.stringify({ object_kind: 'push', project: { id: project.id, full_path: project.fullPath } }));
  return new Promise((resolve, reject) => {
    const req = http.request(`http://${kas.addresses.api}/api/v1/git_push_event`, { method: 'POST', headers: { authorization: `Bearer ${gitlabToKasJwt(secret)}`, 'content-type': 'application/json', 'content-length': String(body.length) }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function callsFor(receiver: string): Call[] {
  return calls.filter((c) => c.receiver === receiver);
}

/** Pushes through `kas` until the receiver got a new valid call (a push sent while agentk resubscribes may be missed; the next is not). */
async function pushArrives(kas: KasApp, receiver: string, what: string): Promise<void> {
  const before = callsFor(receiver).length;
  await waitFor(
    async () => {
      expect(await push(kas, APP_PROJECT)).toBe(204);
      await new Promise((r) => setTimeout(r, 300));
      return callsFor(receiver).length > before;
    },
    what,
    60_000,
    { intervalMs: 200 },
  );
  expect(callsFor(receiver).slice(before).every((c) => c.valid)).toBe(true);
}

async function startReplica(): Promise<KasApp> {
  const app = new KasApp({ config: stack.kas.config, logger: createLogger({ name: 'kas', level: 'debug', destination: new LogCapture() }) });
  await app.start();
  replicas.push(app);
  return app;
}

function fluxOptions() {
  return { gitlabUrls: [GITLAB_URL], notificationControllerUrl: receiverUrl, discoveryIntervalMs: 500, resyncIntervalMs: 2000 };
}

function agentOptions() {
  return {
    kasAddress: `wss://${balancer.address}/`,
    flux: fluxOptions(),
    leaderElection: { namespace: 'default', leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 200 },
  };
}

beforeAll(async () => {
  [cluster, redis, gl] = await Promise.all([startCluster(), startRedis(), startFakeGitLab({ tls: true })]);
  gl.addProject({ id: CONFIG_PROJECT, fullPath: 'acme/clusters' });
  gl.addProject(APP_PROJECT);
  gl.addProject(PRIVATE_PROJECT);
  gl.addAgent({ id: 1, name: 'prod', projectId: CONFIG_PROJECT, token: AGENT_TOKEN });
  gl.allowAgentProject(1, APP_PROJECT.id);

  receiverServer = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      void (async () => {
        const match = (await receivers()).find((r) => r.status?.webhookPath === req.url);
        const token = match ? await secretToken(match.metadata.namespace, match.spec.secretRef.name) : null;
        const valid = req.method === 'POST' && token !== null && verifyGenericHmac(body, token, req.headers['x-signature'] as string | undefined);
        calls.push({ path: req.url ?? '', receiver: match ? `${match.metadata.namespace}/${match.metadata.name}` : null, valid, body: body.toString() });
        res.writeHead(valid ? 200 : 401).end();
      })();
    });
  });
  await new Promise<void>((r) => receiverServer.listen(0, '127.0.0.1', r));
  receiverUrl = `http://127.0.0.1:${(receiverServer.address() as AddressInfo).port}`;

  dir = mkdtempSync(join(tmpdir(), 'flux-e2e-'));
  const privateSecret = join(dir, 'private-api.secret');
  writeFileSync(privateSecret, `${randomBytes(32).toString('base64')}\n`);
  stack = await startStack({
    upstream: { url: cluster.url, caPem: cluster.caPem, token: cluster.adminToken },
    gitlab: { url: gl.url, caPem: gl.caPem, secretFileContent: gl.secretFileContent, repositoryToken: gl.repositoryToken, agentToken: AGENT_TOKEN },
    kas: {
      redis: { server: { address: redis.address }, key_prefix: `flux-${process.pid}` },
      private_api: { listen: { address: '127.0.0.1:0', authentication_secret_file: privateSecret } },
      agent: { flux: { heartbeat_interval: '1s' }, redis_conn_info_refresh: '1s', redis_conn_info_ttl: '5s' },
    },
    startAgent: false,
  });
  replicas.push(stack.kas);
  await startReplica();
  balancer = await startBalancer(() => replicas.map((r) => r.addresses.agent).filter((a): a is string => a !== undefined));
}, 180_000);

afterAll(async () => {
  if (statusLoop) clearInterval(statusLoop);
  await stack?.agent?.stop().catch(() => undefined);
  for (const r of replicas) if (r !== stack?.kas) await r.stop().catch(() => undefined);
  await stack?.close();
  await balancer?.close();
  await new Promise((r) => receiverServer?.close(r));
  await gl?.close();
  await redis?.close();
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('without the Flux CRDs agentk idles and says so once; with them a push reaches the Receiver signed, across agentk and kas restarts', async () => {
  await stack.startAgent(agentOptions());
  await waitFor(() => stack.agentLogs.text.includes('Flux is not installed'), 'agentk to say Flux is not installed', 30_000);
  // Several discovery rounds later (every 500 ms), still one line.
  await new Promise((r) => setTimeout(r, 2500));
  expect(stack.agentLogs.entries.filter((e) => String(e.msg).includes('Flux is not installed'))).toHaveLength(1);

  // Flux arrives: the CRDs, the notification-controller's status loop, three GitRepositories.
  await ok(cluster.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd('source.toolkit.fluxcd.io', 'GitRepository', 'gitrepositories', ['v1', 'v1beta2'])), 'GitRepository CRD');
  await ok(cluster.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd('notification.toolkit.fluxcd.io', 'Receiver', 'receivers', ['v1'])), 'Receiver CRD');
  await waitFor(async () => (await cluster.request('GET', '/apis/notification.toolkit.fluxcd.io/v1/receivers')).status === 200 && (await cluster.request('GET', '/apis/source.toolkit.fluxcd.io/v1/gitrepositories')).status === 200, 'the CRDs to be served', 30_000);
  statusLoop = setInterval(() => void setWebhookPaths().catch(() => undefined), 200);
  await gitRepository('default', 'app', `${GITLAB_URL}/acme/app.git`);
  await gitRepository('default', 'private', `ssh://git@gitlab.example.com/acme/private.git`);
  await gitRepository('default', 'elsewhere', 'https://github.com/acme/app.git');

  await waitFor(() => stack.agentLogs.text.includes('Flux found'), 'agentk to find Flux', 30_000);
  // One Receiver per GitRepository of this GitLab, owned by it, generic-hmac, listing it.
  await waitFor(async () => (await receivers()).length === 2, 'two Receivers', 30_000);
  const all = await receivers();
  expect(all.map((r) => r.metadata.name).sort()).toEqual(['gitlab-agent-app', 'gitlab-agent-private']);
  const app = all.find((r) => r.metadata.name === 'gitlab-agent-app')!;
  const appRepo = (await cluster.request('GET', '/apis/source.toolkit.fluxcd.io/v1/namespaces/default/gitrepositories/app')).json as { metadata: { uid: string } };
  expect(app.spec.type).toBe('generic-hmac');
  expect(app.spec.resources).toEqual([{ apiVersion: 'source.toolkit.fluxcd.io/v1', kind: 'GitRepository', name: 'app' }]);
  expect(app.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'GitRepository', name: 'app', uid: appRepo.metadata.uid })]);
  const secret = (await cluster.request('GET', `/api/v1/namespaces/default/secrets/${app.spec.secretRef.name}`)).json as { metadata: { ownerReferences: Array<{ uid: string }> } };
  expect(secret.metadata.ownerReferences[0]!.uid).toBe(appRepo.metadata.uid);
  const token = await secretToken('default', 'gitlab-agent-app');
  expect(token).toMatch(/^[0-9a-f]{64}$/);
  expect(await secretToken('default', 'gitlab-agent-private')).not.toBe(token);

  // kas refuses the project the agent may not read (GitLab's project_info says 404).
  await waitFor(() => stack.agentLogs.text.includes('kas refused some Flux projects') && stack.agentLogs.text.includes('acme/private'), 'kas to refuse acme/private', 30_000);

  // A push, through either replica, reaches the app Receiver with a valid signature.
  const [a, b] = replicas;
  await pushArrives(a!, 'default/gitlab-agent-app', 'a push through replica A to reach the Receiver');
  await pushArrives(b!, 'default/gitlab-agent-app', 'a push through replica B to reach the Receiver');
  expect(JSON.parse(callsFor('default/gitlab-agent-app')[0]!.body)).toMatchObject({ project: 'acme/app' });
  // The refused project's pushes go nowhere.
  expect(await push(a!, PRIVATE_PROJECT)).toBe(204);
  await new Promise((r) => setTimeout(r, 1000));
  expect(callsFor('default/gitlab-agent-private')).toHaveLength(0);
  expect(calls.every((c) => c.valid)).toBe(true);

  // agentk restarts: the Secret keeps its token, pushes still arrive.
  await stack.agent!.stop();
  await stack.startAgent(agentOptions());
  await pushArrives(b!, 'default/gitlab-agent-app', 'a push after the agentk restart');
  expect(await secretToken('default', 'gitlab-agent-app')).toBe(token);

  // Each kas replica restarts in turn (a new process state, new ports): later pushes still arrive.
  for (let i = 0; i < 2; i++) {
    const old = replicas.shift()!;
    await old.stop();
    const fresh = await startReplica();
    await pushArrives(fresh, 'default/gitlab-agent-app', `a push after kas replica restart ${i + 1}`);
  }
  // Latency from the API call to the signed webhook call, one push at a time (20 pushes).
  const latencies: number[] = [];
  for (let i = 0; i < 20; i++) {
    const before = callsFor('default/gitlab-agent-app').length;
    const started = performance.now();
    expect(await push(replicas[i % 2]!, APP_PROJECT)).toBe(204);
    await waitFor(() => callsFor('default/gitlab-agent-app').length > before, `push ${i + 1} to arrive`, 30_000, { intervalMs: 2 });
    latencies.push(performance.now() - started);
  }
  latencies.sort((x, y) => x - y);
  process.stderr.write(`flux e2e: git_push_event → signed Receiver call over 20 pushes: p50 ${latencies[9]!.toFixed(1)} ms, max ${latencies[19]!.toFixed(1)} ms\n`);
  expect(callsFor('default/gitlab-agent-app').every((c) => c.valid)).toBe(true);

  const metrics = await (await fetch(`http://${stack.agent!.observabilityAddress}/metrics`)).text();
  expect(metrics).toMatch(/agentk_flux_webhook_calls_total\{result="ok"\} [1-9]/);
  expect(metrics).toMatch(/agentk_flux_notifications_received_total [1-9]/);
}, 300_000);

test('standalone kas: pushes are matched by full_path, and reach the Receiver signed', async () => {
  // The GitLab-mode agentk leaves; a standalone kas and its agentk take over the same cluster.
  await stack.agent!.stop();
  const apiSecret = randomBytes(32);
  const apiSecretFile = join(dir, 'api.secret');
  writeFileSync(apiSecretFile, `${apiSecret.toString('base64')}\n`);
  const standalone = await startStack({
    upstream: { url: cluster.url, caPem: cluster.caPem, token: cluster.adminToken },
    kas: { api: { listen: { address: '127.0.0.1:0', authentication_secret_file: apiSecretFile } }, agent: { flux: { heartbeat_interval: '1s' } } },
    agent: { flux: fluxOptions(), leaderElection: { namespace: 'default', leaseName: 'agentk-flux-standalone', leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 200 } },
  });
  try {
    await waitFor(() => standalone.agentLogs.text.includes('flux_git_push stream open'), 'the standalone agentk to subscribe', 30_000);
    const before = callsFor('default/gitlab-agent-app').length;
    const otherBefore = callsFor('default/gitlab-agent-private').length;
    await waitFor(
      async () => {
        // Standalone: no GitLab to ask, every project is followed; the id means nothing, the path decides.
        expect(await push(standalone.kas, { id: 424242, fullPath: 'ACME/app' }, apiSecret)).toBe(204);
        await new Promise((r) => setTimeout(r, 300));
        return callsFor('default/gitlab-agent-app').length > before;
      },
      'a standalone push to reach the Receiver',
      60_000,
      { intervalMs: 200 },
    );
    expect(callsFor('default/gitlab-agent-app').slice(before).every((c) => c.valid)).toBe(true);
    expect(callsFor('default/gitlab-agent-private')).toHaveLength(otherBefore);
  } finally {
    await standalone.close();
  }
}, 120_000);
