/**
 * The informer layer without a real API server: the diff a relist emits, stripping, the restart
 * delays, and the list/watch loop against a scripted HTTP server (events split across chunks,
 * bookmarks, a normal end resumed from the last resourceVersion, a 410 in the stream relisted).
 * The real kube-apiserver tests are in e2e/informers.test.ts.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KubernetesObject } from '@kubernetes/client-node';
import { createLogger } from '../../shared/logger.js';
import { LogCapture } from '../../../test/support/logs.js';
import { waitFor } from '../../../test/support/wait.js';
import { ApiServerClient } from '../kubernetes-api/api-server.js';
import { AgentMetrics } from '../observability/metrics.js';
import { Backoff, fullJitterDelay } from '../tunnel/backoff.js';
import { diffSnapshots, keyOf, stripObject } from './cache.js';
import { LAST_APPLIED_ANNOTATION, RESOURCES, SharedInformers, collectionPath, resourceLabel } from './informers.js';
import { INFORMER_BACKOFF } from './shared-informer.js';

const cm = (name: string, rv: string, extra: Partial<KubernetesObject['metadata']> = {}): KubernetesObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'ns', resourceVersion: rv, ...extra },
});

const snapshot = (...objects: KubernetesObject[]) => new Map(objects.map((o) => [keyOf(o), o]));

describe('diffSnapshots (what a relist emits)', () => {
  test('adds, updates (resourceVersion changed), deletes; unchanged objects emit nothing', () => {
    const a1 = cm('a', '1');
    const b1 = cm('b', '1');
    const c1 = cm('c', '1');
    const b2 = cm('b', '2');
    const d1 = cm('d', '1');
    const events = diffSnapshots(snapshot(a1, b1, c1), snapshot(a1, b2, d1));
    expect(events).toEqual([
      { type: 'delete', object: c1 },
      { type: 'update', object: b2, old: b1 },
      { type: 'add', object: d1 },
    ]);
  });

  test('a listener applying the diff ends with the new snapshot', () => {
    const before = snapshot(...Array.from({ length: 50 }, (_, i) => cm(`o${i}`, '1')));
    const after = snapshot(...Array.from({ length: 50 }, (_, i) => cm(`o${i + 20}`, i % 2 ? '1' : '3')));
    const mine = new Map(before);
    for (const ev of diffSnapshots(before, after)) {
      if (ev.type === 'delete') mine.delete(keyOf(ev.object));
      else mine.set(keyOf(ev.object), ev.object);
    }
    expect([...mine.entries()].sort()).toEqual([...after.entries()].sort());
  });

  test('the same name in two namespaces is two objects; cluster-scoped objects have an empty namespace', () => {
    const x = { ...cm('x', '1'), metadata: { name: 'x', namespace: 'one', resourceVersion: '1' } };
    const y = { ...cm('x', '1'), metadata: { name: 'x', namespace: 'two', resourceVersion: '1' } };
    expect(diffSnapshots(snapshot(), snapshot(x, y))).toHaveLength(2);
    expect(keyOf({ metadata: { name: 'kube-system' } })).toBe('/kube-system');
  });
});

describe('stripObject', () => {
  test('drops managedFields and the last-applied annotation, keeps other annotations', () => {
    const o = stripObject(cm('a', '1', { managedFields: [{ manager: 'kubectl' }], annotations: { [LAST_APPLIED_ANNOTATION]: '{}', keep: 'x' } }));
    expect(o.metadata).toEqual({ name: 'a', namespace: 'ns', resourceVersion: '1', annotations: { keep: 'x' } });
  });

  test('an annotations map left empty goes', () => {
    const o = stripObject(cm('a', '1', { annotations: { [LAST_APPLIED_ANNOTATION]: '{}' } }));
    expect(o.metadata?.annotations).toBeUndefined();
  });
});

describe('restart delays', () => {
  test('exponential with full jitter, capped at 30 s', () => {
    // The ceiling doubles from 500 ms and stops at 30 s; a random 1 (excluded) gives just under it.
    const ceilings = Array.from({ length: 10 }, (_, attempt) => fullJitterDelay(attempt, INFORMER_BACKOFF, () => 0.999999));
    expect(ceilings).toEqual([499, 999, 1999, 3999, 7999, 15999, 29999, 29999, 29999, 29999]);
    expect(fullJitterDelay(50, INFORMER_BACKOFF, () => 0)).toBe(0);
    expect(fullJitterDelay(3, INFORMER_BACKOFF, () => 0.5)).toBe(2000);
  });

  test('jitter spreads the delays of many informers', () => {
    const delays = Array.from({ length: 200 }, () => new Backoff(INFORMER_BACKOFF).next() + 0);
    const distinct = new Set(delays).size;
    expect(distinct).toBeGreaterThan(100);
    expect(Math.max(...delays)).toBeLessThan(INFORMER_BACKOFF.baseMs);
  });

  test('a watch that stayed up resets the delays', () => {
    const b = new Backoff(INFORMER_BACKOFF, () => 0.999);
    for (let i = 0; i < 8; i++) b.next();
    expect(b.next()).toBeGreaterThan(29_000);
    expect(b.connectionEnded(INFORMER_BACKOFF.resetAfterMs)).toBe(true);
    expect(b.next()).toBeLessThan(INFORMER_BACKOFF.baseMs);
  });
});

describe('resource paths and labels', () => {
  test('core and grouped types, namespaced or not', () => {
    expect(collectionPath(RESOURCES.configMaps, 'a')).toBe('/api/v1/namespaces/a/configmaps');
    expect(collectionPath(RESOURCES.deployments)).toBe('/apis/apps/v1/deployments');
    expect(collectionPath(RESOURCES.namespaces, 'ignored')).toBe('/api/v1/namespaces');
    expect(resourceLabel(RESOURCES.leases)).toBe('leases.coordination.k8s.io');
    expect(resourceLabel(RESOURCES.events)).toBe('events');
  });
});

/** A scripted API server: each request is answered by the next matching step. */
function scriptedServer(handler: (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void) {
  const requests: URL[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    requests.push(url);
    handler(req, res, url);
  });
  return { server, requests };
}

describe('the list/watch loop (scripted server)', () => {
  let server: http.Server;
  let client: ApiServerClient;
  let informers: SharedInformers;
  let metrics: AgentMetrics;
  const logs = new LogCapture();

  async function setUp(handler: Parameters<typeof scriptedServer>[0]): Promise<URL[]> {
    const s = scriptedServer(handler);
    server = s.server;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const logger = createLogger({ name: 'test', destination: logs });
    metrics = new AgentMetrics({ defaultMetrics: false });
    client = new ApiServerClient({ url: new URL(`http://127.0.0.1:${port}`), tls: { rejectUnauthorized: true }, auth: { kind: 'token', token: 't' }, source: 'test' }, { logger });
    informers = new SharedInformers({ client, metrics, logger, backoff: { baseMs: 10, capMs: 50 } });
    return s.requests;
  }

  afterEach(async () => {
    informers.stop();
    await informers.closed();
    client.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  test('events split across chunks, a bookmark, a normal end resumed from the last resourceVersion, then 410 in the stream: relist and diff', async () => {
    let lists = 0;
    let watches = 0;
    const requests = await setUp((_req, res, url) => {
      res.setHeader('content-type', 'application/json');
      if (url.searchParams.get('watch') !== '1') {
        lists++;
        const items = lists === 1 ? [cm('a', '10'), cm('b', '10', { managedFields: [{ manager: 'x' }] })] : [cm('a', '10'), cm('c', '40')];
        res.end(JSON.stringify({ kind: 'ConfigMapList', metadata: { resourceVersion: lists === 1 ? '10' : '40' }, items }));
        return;
      }
      watches++;
      if (watches === 1) {
        const line = JSON.stringify({ type: 'MODIFIED', object: cm('b', '11', { annotations: { [LAST_APPLIED_ANNOTATION]: '{}' } }) }) + '\n';
        res.write(line.slice(0, 7));
        setTimeout(() => {
          res.write(line.slice(7) + JSON.stringify({ type: 'BOOKMARK', object: { kind: 'ConfigMap', metadata: { resourceVersion: '15' } } }) + '\n');
          res.end();
        }, 20);
      } else if (watches === 2) {
        res.end(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' } }) + '\n');
      } else {
        res.write(''); // stays open
      }
    });
    const handle = informers.acquire(RESOURCES.configMaps, { namespace: 'ns' });
    const events: string[] = [];
    handle.on((ev) => events.push(`${ev.type} ${ev.object.metadata!.name} ${ev.object.metadata!.resourceVersion}`));
    await handle.waitForSync();
    await waitFor(() => lists === 2 && handle.get('ns', 'c') !== undefined && watches >= 3, 'the relist and the watch after it');
    expect(events).toEqual(['add a 10', 'add b 10', 'update b 11', 'delete b 11', 'add c 40']);
    const watchRvs = requests.filter((u) => u.searchParams.get('watch') === '1').map((u) => u.searchParams.get('resourceVersion'));
    // After the list at 10; after the normal end, from the bookmark's 15; after the relist, from 40.
    expect(watchRvs.slice(0, 3)).toEqual(['10', '15', '40']);
    expect(requests[0]!.searchParams.get('limit')).toBe('500');
    expect(handle.list().map((o) => o.metadata!.name).sort()).toEqual(['a', 'c']);
    const text = await metrics.registry.metrics();
    expect(text).toContain('agentk_informer_relists_total{resource="configmaps"} 1');
    expect(text).toContain('agentk_informer_watch_restarts_total{resource="configmaps",reason="ended"} 1');
    expect(text).toContain('agentk_informer_watch_restarts_total{resource="configmaps",reason="expired"} 1');
    expect(text).toContain('agentk_informer_objects{resource="configmaps"} 2');
  });

  test('a paginated list follows continue tokens; failed requests back off and warn once, not per attempt', async () => {
    let failures = 0;
    const requests = await setUp((_req, res, url) => {
      res.setHeader('content-type', 'application/json');
      if (url.searchParams.get('watch') === '1') return void res.write('');
      if (failures < 8) {
        failures++;
        res.statusCode = 500;
        return void res.end('{"kind":"Status","code":500}');
      }
      if (!url.searchParams.get('continue')) res.end(JSON.stringify({ metadata: { resourceVersion: '5', continue: 'next' }, items: [cm('p1', '3')] }));
      else res.end(JSON.stringify({ metadata: { resourceVersion: '5' }, items: [cm('p2', '4')] }));
    });
    const handle = informers.acquire(RESOURCES.configMaps, { labelSelector: 'app=x' });
    await handle.waitForSync(AbortSignal.timeout(10_000));
    expect(handle.list().map((o) => o.metadata!.name)).toEqual(['p1', 'p2']);
    expect(requests[0]!.pathname).toBe('/api/v1/configmaps');
    expect(requests[0]!.searchParams.get('labelSelector')).toBe('app=x');
    await waitFor(() => requests.some((u) => u.searchParams.get('watch') === '1'), 'the watch');
    const watch = requests.find((u) => u.searchParams.get('watch') === '1')!;
    expect(watch.searchParams.get('resourceVersion')).toBe('5');
    const warnings = logs.entries.filter((e) => e.level === 40 && String(e.msg).includes('cannot list'));
    expect(warnings).toHaveLength(1);
  });

  test('waitForSync rejects on abort and when the informer stops first', async () => {
    await setUp((_req, res) => {
      res.statusCode = 503;
      res.end('{}');
    });
    const handle = informers.acquire(RESOURCES.pods);
    const controller = new AbortController();
    const waiting = handle.waitForSync(controller.signal);
    controller.abort(new Error('gave up'));
    await expect(waiting).rejects.toThrow('gave up');
    const second = handle.waitForSync();
    handle.release();
    await expect(second).rejects.toThrow(/stopped before it synced/);
    expect(() => {
      informers.stop();
      informers.acquire(RESOURCES.pods);
    }).toThrow(/stopped/);
  });
});
