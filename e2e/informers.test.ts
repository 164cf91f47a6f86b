/**
 * agentk's informer layer against a real kube-apiserver: the cache converges to exactly the API
 * server's state after thousands of writes, survives an API server restart during which objects
 * changed (the old resourceVersion is compacted away: 410 Gone, relist), keeps no managedFields
 * and no last-applied annotation, and shares one watch between handles of the same key.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { createLogger } from '../src/shared/logger.js';
import { LAST_APPLIED_ANNOTATION, RESOURCES, SharedInformers } from '../src/agent/informers/informers.js';
import { ApiServerClient, type ApiServerConfig } from '../src/agent/kubernetes-api/api-server.js';
import { AgentMetrics } from '../src/agent/observability/metrics.js';
import { LogCapture } from '../test/support/logs.js';
import { waitFor } from '../test/support/wait.js';
import { startCluster, type Cluster } from './support/cluster.js';

let cluster: Cluster;
let client: ApiServerClient;
let metrics: AgentMetrics;
let informers: SharedInformers;
const logs = new LogCapture();

beforeAll(async () => {
  cluster = await startCluster();
  const config: ApiServerConfig = {
    url: new URL(cluster.url),
    tls: { ca: Buffer.from(cluster.caPem), rejectUnauthorized: true },
    auth: { kind: 'token', token: cluster.adminToken },
    source: 'e2e',
  };
  const logger = createLogger({ name: 'agentk', level: 'info', destination: logs });
  metrics = new AgentMetrics({ defaultMetrics: false });
  client = new ApiServerClient(config, { logger, metrics });
  // Short backoff so the restart test does not wait on a 30 s cap; the watch timeout stays the default.
  informers = new SharedInformers({ client, metrics, logger, backoff: { baseMs: 200, capMs: 2000 } });
}, 180_000);

afterAll(async () => {
  informers?.stop();
  await informers?.closed();
  client?.close();
  await cluster?.stop();
});

async function api(method: string, path: string, body?: unknown, contentType?: string): Promise<unknown> {
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await cluster.request(method, path, body, { contentType });
      if (r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
      return r.json;
    } catch (err) {
      // A socket of the keep-alive pool may have been closed by the server in between: retry once.
      if (attempt >= 2 || !/ECONNRESET|socket hang up/.test(String(err))) throw err;
    }
  }
}

async function createNamespace(name: string): Promise<void> {
  await api('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
}

/** Runs `work` over `items` with `concurrency` requests at a time. */
async function pool<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

/** name -> resourceVersion of every ConfigMap in `ns`, straight from the API server (quorum read). */
async function serverState(ns: string): Promise<Map<string, string>> {
  const list = (await api('GET', `/api/v1/namespaces/${ns}/configmaps`)) as { items: KubernetesObject[] };
  return new Map(list.items.map((o) => [o.metadata!.name!, o.metadata!.resourceVersion!]));
}

function stateOf(objects: Iterable<KubernetesObject>): Map<string, string> {
  return new Map([...objects].map((o) => [o.metadata!.name!, o.metadata!.resourceVersion!]));
}

function sameState(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

function diffText(want: Map<string, string>, got: Map<string, string>): string {
  const missing = [...want].filter(([k, v]) => got.get(k) !== v).slice(0, 5);
  const extra = [...got].filter(([k]) => !want.has(k)).slice(0, 5);
  return `server ${want.size}, cache ${got.size}; differing ${JSON.stringify(missing)}; extra ${JSON.stringify(extra)}`;
}

async function metricValue(name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []) as Array<{ value: number; labels: Record<string, string | number> }>;
  return values.filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)).reduce((s, v) => s + v.value, 0);
}

/** A listener's own picture of the objects, built only from the events it receives. */
function follow(handle: { on(l: (ev: { type: string; object: KubernetesObject }) => void): () => void }, initial: KubernetesObject[]): Map<string, KubernetesObject> {
  const seen = new Map(initial.map((o) => [o.metadata!.name!, o]));
  handle.on((ev) => {
    if (ev.type === 'delete') seen.delete(ev.object.metadata!.name!);
    else seen.set(ev.object.metadata!.name!, ev.object);
  });
  return seen;
}

const configMap = (ns: string, name: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: ns, labels: { app: 'informer-e2e' }, ...extra },
  data: { value: name },
});

describe('informers against a real API server', () => {
  test('2,000 ConfigMaps created, updated and deleted: the cache and a listener converge to exactly the server state', async () => {
    const ns = 'informers-bulk';
    await createNamespace(ns);
    const handle = informers.acquire(RESOURCES.configMaps, { namespace: ns });
    await handle.waitForSync(AbortSignal.timeout(60_000));
    expect(handle.list()).toEqual([]);
    const seen = follow(handle, handle.list());

    const names = Array.from({ length: 2000 }, (_, i) => `cm-${String(i).padStart(4, '0')}`);
    await pool(names, 20, async (name) => {
      await api('POST', `/api/v1/namespaces/${ns}/configmaps`, configMap(ns, name));
    });
    await pool(names.filter((_, i) => i % 2 === 0), 20, async (name) => {
      await api('PUT', `/api/v1/namespaces/${ns}/configmaps/${name}`, { ...configMap(ns, name), data: { value: `${name}-updated` } });
    });
    await pool(names.filter((_, i) => i % 3 === 0), 20, async (name) => {
      await api('DELETE', `/api/v1/namespaces/${ns}/configmaps/${name}`);
    });

    const want = await serverState(ns);
    expect(want.size).toBe(2000 - Math.ceil(2000 / 3));
    await waitFor(() => sameState(want, stateOf(handle.list())), 'the cache to hold the server state', 120_000, { intervalMs: 200, describe: () => diffText(want, stateOf(handle.list())) });
    await waitFor(() => sameState(want, stateOf(seen.values())), 'the listener to hold the server state', 30_000, { intervalMs: 200, describe: () => diffText(want, stateOf(seen.values())) });
    expect(handle.get(ns, 'cm-0002')?.metadata?.resourceVersion).toBe(want.get('cm-0002'));
    expect((handle.get(ns, 'cm-0002') as { data?: Record<string, string> }).data).toEqual({ value: 'cm-0002-updated' });
    expect(handle.get(ns, 'cm-0003')).toBeUndefined();
    expect(await metricValue('agentk_informer_objects', { resource: 'configmaps' })).toBe(want.size);
    handle.release();
    await informers.closed();
    expect(await metricValue('agentk_informer_objects', { resource: 'configmaps' })).toBe(0);
  }, 600_000);

  test('cached copies have no managedFields and no last-applied annotation; other annotations stay', async () => {
    const ns = 'informers-strip';
    await createNamespace(ns);
    const lastApplied = JSON.stringify(configMap(ns, 'applied'));
    await api('POST', `/api/v1/namespaces/${ns}/configmaps`, configMap(ns, 'applied', { annotations: { [LAST_APPLIED_ANNOTATION]: lastApplied, keep: 'me' } }));
    await api('PATCH', `/api/v1/namespaces/${ns}/configmaps/ssa?fieldManager=e2e&force=true`, configMap(ns, 'ssa', { annotations: { [LAST_APPLIED_ANNOTATION]: lastApplied } }), 'application/apply-patch+yaml');
    // The server does keep both: stripping is the informer's doing.
    const stored = (await api('GET', `/api/v1/namespaces/${ns}/configmaps/ssa`)) as KubernetesObject;
    expect(stored.metadata?.managedFields?.length).toBeGreaterThan(0);
    expect(stored.metadata?.annotations?.[LAST_APPLIED_ANNOTATION]).toBe(lastApplied);

    const handle = informers.acquire(RESOURCES.configMaps, { namespace: ns });
    await handle.waitForSync(AbortSignal.timeout(60_000));
    const updates: KubernetesObject[] = [];
    handle.on((ev) => updates.push(ev.object));
    // One more through the watch (not the list).
    await api('PATCH', `/api/v1/namespaces/${ns}/configmaps/ssa2?fieldManager=e2e&force=true`, configMap(ns, 'ssa2', { annotations: { [LAST_APPLIED_ANNOTATION]: lastApplied } }), 'application/apply-patch+yaml');
    await waitFor(() => handle.get(ns, 'ssa2') !== undefined, 'the watched object', 30_000, { intervalMs: 100 });
    const cached = handle.list();
    expect(cached.map((o) => o.metadata?.name).sort()).toEqual(['applied', 'ssa', 'ssa2']);
    for (const o of [...cached, ...updates]) {
      expect(o.metadata?.managedFields).toBeUndefined();
      expect(o.metadata?.annotations?.[LAST_APPLIED_ANNOTATION]).toBeUndefined();
    }
    expect(handle.get(ns, 'applied')?.metadata?.annotations).toEqual({ keep: 'me' });
    expect(handle.get(ns, 'ssa')?.metadata?.annotations).toBeUndefined();
    handle.release();
  }, 120_000);

  test('two acquires of the same key share one cache and one watch; releasing both stops it', async () => {
    const ns = 'informers-shared';
    await createNamespace(ns);
    await api('POST', `/api/v1/namespaces/${ns}/configmaps`, configMap(ns, 'one'));
    const a = informers.acquire(RESOURCES.configMaps, { namespace: ns });
    const b = informers.acquire(RESOURCES.configMaps, { namespace: ns });
    // Another key (a label selector) is another cache.
    const c = informers.acquire(RESOURCES.configMaps, { namespace: ns, labelSelector: 'app=other' });
    await Promise.all([a.waitForSync(), b.waitForSync(), c.waitForSync()]);
    const mine = [...informers.active.values()].filter((i) => i.resource === 'configmaps');
    expect(mine).toHaveLength(2);
    const shared = mine.find((i) => i.size === 1)!;
    expect(shared.watches).toBe(1);
    expect(shared.lists).toBe(1);
    expect(a.list()).toEqual(b.list());
    expect(c.list()).toEqual([]);
    a.release();
    a.release(); // idempotent: does not take b's reference
    expect(informers.active.size).toBe(2);
    await api('POST', `/api/v1/namespaces/${ns}/configmaps`, configMap(ns, 'two'));
    await waitFor(() => b.get(ns, 'two') !== undefined, 'the remaining handle to see a new object', 30_000, { intervalMs: 100 });
    b.release();
    c.release();
    expect(informers.active.size).toBe(0);
    await informers.closed();
    expect(shared.stopped).toBe(true);
    expect(shared.size).toBe(0);
    expect(shared.watches).toBe(1);
    // A released handle's sync wait fails instead of hanging.
    await expect(a.waitForSync()).rejects.toThrow(/released/);
  }, 120_000);

  test('the API server restarts while objects change (and etcd is compacted): 410 Gone, relist, the cache converges', async () => {
    const ns = 'informers-restart';
    await createNamespace(ns);
    const names = Array.from({ length: 300 }, (_, i) => `cm-${i}`);
    await pool(names, 20, async (name) => {
      await api('POST', `/api/v1/namespaces/${ns}/configmaps`, configMap(ns, name));
    });
    const handle = informers.acquire(RESOURCES.configMaps, { namespace: ns });
    await handle.waitForSync(AbortSignal.timeout(60_000));
    const seen = follow(handle, handle.list());
    expect(handle.list()).toHaveLength(300);
    const relistsBefore = await metricValue('agentk_informer_relists_total', { resource: 'configmaps' });
    const expiredBefore = await metricValue('agentk_informer_watch_restarts_total', { resource: 'configmaps', reason: 'expired' });
    const warningsBefore = logs.entries.filter((e) => e.level === 40).length;

    await cluster.stopApiServer();
    // While it is down: delete 50 objects behind its back, in etcd, and compact etcd's history so
    // the informer's resourceVersion is gone for good.
    for (const name of names.slice(0, 50)) await etcdDelete(`/registry/configmaps/${ns}/${name}`);
    await etcdCompact();
    // The informer keeps trying meanwhile (with backoff).
    await new Promise((r) => setTimeout(r, 3000));
    await cluster.startApiServer();
    // And more changes right after it is back, through the API.
    await pool(names.slice(50, 80), 10, async (name) => {
      await api('PUT', `/api/v1/namespaces/${ns}/configmaps/${name}`, { ...configMap(ns, name), data: { value: 'after-restart' } });
    });
    await pool(['new-1', 'new-2', 'new-3'], 3, async (name) => {
      await api('POST', `/api/v1/namespaces/${ns}/configmaps`, configMap(ns, name));
    });

    const want = await serverState(ns);
    expect(want.size).toBe(300 - 50 + 3);
    await waitFor(() => sameState(want, stateOf(handle.list())), 'the cache to converge after the restart', 180_000, { intervalMs: 250, describe: () => diffText(want, stateOf(handle.list())) });
    await waitFor(() => sameState(want, stateOf(seen.values())), 'the listener to converge after the restart', 30_000, { intervalMs: 250, describe: () => diffText(want, stateOf(seen.values())) });
    expect(await metricValue('agentk_informer_relists_total', { resource: 'configmaps' })).toBeGreaterThan(relistsBefore);
    expect(await metricValue('agentk_informer_watch_restarts_total', { resource: 'configmaps', reason: 'expired' })).toBeGreaterThan(expiredBefore);
    expect(await metricValue('agentk_informer_watch_restarts_total', { resource: 'configmaps', reason: 'error' })).toBeGreaterThan(0);
    // Several failed attempts while the server was down, but warnings are rate-limited.
    const warnings = logs.entries.filter((e) => e.level === 40).length - warningsBefore;
    expect(warnings).toBeGreaterThanOrEqual(1);
    expect(warnings).toBeLessThanOrEqual(2);
    handle.release();
  }, 400_000);
});

const b64 = (s: string) => Buffer.from(s).toString('base64');

async function etcdPost(path: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await fetch(`${cluster.etcdUrl}${path}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
  const json = (await r.json()) as Record<string, unknown>;
  if (!r.ok) throw new Error(`etcd ${path}: HTTP ${r.status} ${JSON.stringify(json)}`);
  return json;
}

async function etcdDelete(key: string): Promise<void> {
  const r = await etcdPost('/v3/kv/deleterange', { key: b64(key) });
  if (r.deleted !== '1') throw new Error(`etcd did not delete ${key}: ${JSON.stringify(r)}`);
}

async function etcdCompact(): Promise<void> {
  const r = await etcdPost('/v3/kv/range', { key: b64('/registry/namespaces/default') });
  const revision = (r.header as { revision: string }).revision;
  await etcdPost('/v3/kv/compaction', { revision, physical: true });
}
