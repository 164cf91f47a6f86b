/**
 * Workload health against a real kube-apiserver, with real kas and agentk (in-process, TLS): no
 * kubelet or controller runs, so the status a kubelet or controller would write is written by the
 * test through the status subresource. The summary at kas's API follows: an unavailable Deployment
 * and a Pod that cannot pull its image appear, then leave once their status is fixed; a DaemonSet
 * short of pods and a failed Job appear; a Pod Pending past the threshold appears without any
 * further change (agentk's timer); an agent that disconnected shows its last summary and when it
 * was last seen. Two kas replicas share a real Redis: agentk connects to the first, and the second
 * answers the same.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KasApp } from '../src/broker/app.js';
import type { AgentHealthView } from '../src/broker/workload-health/workload-health.js';
import { createLogger } from '../src/shared/logger.js';
import { gitlabToKasJwt } from '../test/support/fake-gitlab.js';
import { LogCapture } from '../test/support/logs.js';
import { startRedis, type TestRedis } from '../test/support/redis.js';
import { startStack, type Stack } from '../test/support/stack.js';
import { waitFor } from '../test/support/wait.js';
import { startCluster, type Cluster } from './support/cluster.js';

const secret = randomBytes(32);
let cluster: Cluster;
let redis: TestRedis;
let stack: Stack;
/** The second replica: agentk never connects to it. */
let other: KasApp;

const PENDING_AFTER_MS = 4000;

beforeAll(async () => {
  cluster = await startCluster();
  redis = await startRedis();
  const secretFile = join(cluster.dir, 'api.secret');
  writeFileSync(secretFile, `${secret.toString('base64')}\n`);
  stack = await startStack({
    upstream: { url: cluster.url, caPem: cluster.caPem, token: cluster.adminToken },
    kas: {
      api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
      redis: { server: { address: redis.address }, key_prefix: `wh-${process.pid}` },
      private_api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
      agent: { redis_conn_info_refresh: '1s', redis_conn_info_ttl: '5s' },
    },
    agent: { kasConnections: 1, workloadHealth: { debounceMs: 500, maxWaitMs: 3000, limits: { pendingAfterMs: PENDING_AFTER_MS } } },
  });
  other = new KasApp({ config: stack.kas.config, logger: createLogger({ name: 'kas', level: 'info', destination: new LogCapture() }) });
  await other.start();
}, 180_000);

afterAll(async () => {
  await other?.stop();
  await stack?.close();
  await redis?.close();
  await cluster?.stop();
});

async function api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const r = await cluster.request(method, path, body);
  if (r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
  return r.json as Record<string, unknown>;
}

/** Writes an object's status as its controller or kubelet would (GET, then PUT .../status). */
async function setStatus(path: string, status: Record<string, unknown>): Promise<void> {
  const obj = await api('GET', path);
  await api('PUT', `${path}/status`, { ...obj, status });
}

async function health(agentId = 1, replica: KasApp = stack.kas): Promise<{ status: number; body: AgentHealthView }> {
  const res = await fetch(`http://${replica.addresses.api}/api/v1/agents/${agentId}/health`, { headers: { authorization: `Bearer ${gitlabToKasJwt(secret)}` } });
  return { status: res.status, body: (await res.json()) as AgentHealthView };
}

function problemsOf(view: AgentHealthView, namespace: string): Array<Record<string, unknown>> {
  return (view.namespaces.find((n) => n.namespace === namespace)?.problems ?? []) as unknown as Array<Record<string, unknown>>;
}

/** Waits until the API's summary satisfies `check`, showing the last answer when it never does. */
async function waitForHealth(what: string, check: (view: AgentHealthView) => boolean, replica: KasApp = stack.kas): Promise<AgentHealthView> {
  let last: AgentHealthView | null = null;
  await waitFor(
    async () => {
      const { status, body } = await health(1, replica);
      last = status === 200 ? body : null;
      return last !== null && check(last);
    },
    what,
    60_000,
    { intervalMs: 200, describe: () => `the last answer of GET /api/v1/agents/1/health was ${JSON.stringify(last)}` },
  );
  return last!;
}

/** A namespace with its default ServiceAccount (no controller makes it here; Pods need it). */
async function createNamespace(name: string): Promise<void> {
  await api('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  await api('POST', `/api/v1/namespaces/${name}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } });
}

const container = { name: 'app', image: 'registry.example/shop/web:v2' };
// No token controller runs here: Pods must not ask for a service account token.
const podSpec = { containers: [container], automountServiceAccountToken: false };

describe('workload health against a real kube-apiserver', () => {
  it('answers 404 for an agent kas never saw, and an empty summary once the agent is connected and its caches are filled', async () => {
    expect((await health(2)).status).toBe(404);
    expect((await health(2, other)).status).toBe(404);
    const view = await waitForHealth('the first summary of agent 1', (v) => v.connected && v.updated_at !== null);
    expect(view).toMatchObject({ agent_id: 1, connected: true, namespaces: [], omitted_namespaces: 0, omitted_problems: 0 });
  }, 150_000);

  it('shows an unavailable Deployment and a Pod in ImagePullBackOff, then their recovery', async () => {
    await createNamespace('shop');
    const labels = { app: 'web' };
    await api('POST', '/apis/apps/v1/namespaces/shop/deployments', {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web' },
      spec: { replicas: 2, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: podSpec } },
    });
    await api('POST', '/api/v1/namespaces/shop/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', labels }, spec: podSpec });
    await setStatus('/api/v1/namespaces/shop/pods/web-1', {
      phase: 'Pending',
      containerStatuses: [{ ...container, imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "registry.example/shop/web:v2"' } } }],
    });

    const broken = await waitForHealth('the Deployment and the Pod of namespace shop to be reported', (v) => problemsOf(v, 'shop').length === 2);
    expect(problemsOf(broken, 'shop')).toEqual([
      { kind: 'Deployment', name: 'web', problem: 'Unavailable', desired: 2, available: 0 },
      { kind: 'Pod', name: 'web-1', problem: 'ImagePullBackOff', container: 'app', message: 'Back-off pulling image "registry.example/shop/web:v2"' },
    ]);
    expect(Date.parse(broken.updated_at!)).not.toBeNaN();
    // The other replica, which never had the agent, answers from Redis.
    const brokenElsewhere = await waitForHealth('the other replica to show namespace shop', (v) => problemsOf(v, 'shop').length === 2, other);
    expect(brokenElsewhere.namespaces).toEqual(broken.namespaces);

    await setStatus('/apis/apps/v1/namespaces/shop/deployments/web', { replicas: 2, readyReplicas: 2, availableReplicas: 2, updatedReplicas: 2, observedGeneration: 1 });
    await setStatus('/api/v1/namespaces/shop/pods/web-1', {
      phase: 'Running',
      conditions: [{ type: 'Ready', status: 'True' }],
      containerStatuses: [{ ...container, imageID: 'registry.example/shop/web@sha256:00', ready: true, restartCount: 0, state: { running: { startedAt: new Date().toISOString() } } }],
    });
    await waitForHealth('namespace shop to recover', (v) => problemsOf(v, 'shop').length === 0);
    const elsewhere = await waitForHealth('the other replica to show the recovery', (v) => problemsOf(v, 'shop').length === 0 && v.updated_at !== broken.updated_at, other);
    expect(elsewhere.connected).toBe(true);
  }, 150_000);

  it('shows a DaemonSet short of pods, a failed Job and, without any further change, a Pod Pending past the threshold', async () => {
    await createNamespace('ops');
    const labels = { app: 'node-agent' };
    await api('POST', '/apis/apps/v1/namespaces/ops/daemonsets', {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'node-agent' },
      spec: { selector: { matchLabels: labels }, template: { metadata: { labels }, spec: podSpec } },
    });
    await setStatus('/apis/apps/v1/namespaces/ops/daemonsets/node-agent', { desiredNumberScheduled: 3, currentNumberScheduled: 3, numberMisscheduled: 0, numberReady: 1, numberAvailable: 1 });
    await api('POST', '/apis/batch/v1/namespaces/ops/jobs', {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'migrate' },
      spec: { backoffLimit: 0, template: { spec: { ...podSpec, restartPolicy: 'Never' } } },
    });
    const now = new Date().toISOString();
    await setStatus('/apis/batch/v1/namespaces/ops/jobs/migrate', {
      failed: 1,
      startTime: now,
      conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit', lastProbeTime: now, lastTransitionTime: now }],
    });
    // Created Pending by the API server; nothing schedules it.
    await api('POST', '/api/v1/namespaces/ops/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'stuck' }, spec: podSpec });

    const first = await waitForHealth('the DaemonSet and the Job of namespace ops', (v) => problemsOf(v, 'ops').length >= 2);
    expect(problemsOf(first, 'ops').slice(0, 2)).toEqual([
      { kind: 'DaemonSet', name: 'node-agent', problem: 'Unavailable', desired: 3, available: 1 },
      { kind: 'Job', name: 'migrate', problem: 'Failed', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' },
    ]);
    const created = (await api('GET', '/api/v1/namespaces/ops/pods/stuck')).metadata as { creationTimestamp: string };
    // Nothing changes in the cluster from here on: only agentk's timer can report the Pod.
    const pending = await waitForHealth('the Pod pending past the threshold', (v) => problemsOf(v, 'ops').some((p) => p.name === 'stuck'));
    expect(problemsOf(pending, 'ops')).toContainEqual({ kind: 'Pod', name: 'stuck', problem: 'Pending', since: new Date(created.creationTimestamp).toISOString() });
    expect(Date.parse(pending.updated_at!) - Date.parse(created.creationTimestamp)).toBeGreaterThanOrEqual(PENDING_AFTER_MS - 1000);
  }, 150_000);

  it('keeps the last summary of an agent that disconnected, with the time it was last seen', async () => {
    const before = await waitForHealth('a summary with the problems of namespace ops', (v) => problemsOf(v, 'ops').length === 3);
    await stack.agent!.stop();
    const after = await waitForHealth('agent 1 to be disconnected', (v) => !v.connected);
    expect(after.namespaces).toEqual(before.namespaces);
    expect(after.updated_at).toBe(before.updated_at);
    const lastSeen = Date.parse(after.last_seen);
    expect(lastSeen).toBeGreaterThanOrEqual(Date.parse(before.updated_at!));
    expect(lastSeen).toBeLessThanOrEqual(Date.now());
    // The time it was last seen stays put while it is away.
    await new Promise((r) => setTimeout(r, 1100));
    expect((await health()).body.last_seen).toBe(after.last_seen);
    // The other replica knows the same from Redis.
    const elsewhere = await waitForHealth('the other replica to see agent 1 disconnected', (v) => !v.connected, other);
    expect(elsewhere).toEqual(after);
  }, 150_000);
});
