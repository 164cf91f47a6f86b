/**
 * The memory of agentk's informer caches: a real kube-apiserver (e2e/support/cluster.ts) filled
 * with ConfigMaps (written like `kubectl apply`: a last-applied annotation, managedFields) and Pods
 * (written with server-side apply: 2 containers, env, probes, volumes, managedFields), then one
 * child process per mode (stripping on, stripping off) that caches them all with the informer
 * layer and reports RSS and heap after garbage collection, against its own baseline before the
 * informers started.
 *
 *   npm run bench:informers -- [--configmaps 10000] [--pods 10000] [--concurrency 20]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../src/shared/logger.js';
import { RESOURCES, SharedInformers } from '../src/agent/informers/informers.js';
import { ApiServerClient } from '../src/agent/kubernetes-api/api-server.js';
import { AgentMetrics } from '../src/agent/observability/metrics.js';
import { startCluster, type Cluster } from '../e2e/support/cluster.js';
import { numberFlag } from './lib/sequential-gets.js';

const CONFIGMAPS = numberFlag('configmaps', 10_000);
const PODS = numberFlag('pods', 10_000);
const CONCURRENCY = numberFlag('concurrency', 20);
const NAMESPACES = 10;

interface Target {
  url: string;
  caPem: string;
  token: string;
}

interface Measurement {
  mode: 'stripped' | 'unstripped';
  objects: number;
  syncMs: number;
  baseline: { rss: number; heapUsed: number };
  /** After the ConfigMaps synced. */
  configMaps: { rss: number; heapUsed: number };
  /** After the Pods synced too. */
  cached: { rss: number; heapUsed: number };
}

const mib = (n: number) => (n / 1024 / 1024).toFixed(1);

async function settleGc(): Promise<NodeJS.MemoryUsage> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 100));
  }
  return process.memoryUsage();
}

/** The child: caches every ConfigMap and Pod of the cluster and prints a Measurement as JSON. */
async function child(mode: Measurement['mode'], target: Target): Promise<void> {
  const logger = createLogger({ name: 'bench', level: 'warn' });
  const metrics = new AgentMetrics({ defaultMetrics: false });
  const client = new ApiServerClient(
    { url: new URL(target.url), tls: { ca: Buffer.from(target.caPem), rejectUnauthorized: true }, auth: { kind: 'token', token: target.token }, source: 'bench' },
    { logger },
  );
  const informers = new SharedInformers({ client, metrics, logger, strip: mode === 'stripped' });
  const baseline = await settleGc();
  const started = Date.now();
  const configMaps = informers.acquire(RESOURCES.configMaps);
  await configMaps.waitForSync(AbortSignal.timeout(600_000));
  const afterConfigMaps = await settleGc();
  const pods = informers.acquire(RESOURCES.pods);
  await pods.waitForSync(AbortSignal.timeout(600_000));
  const syncMs = Date.now() - started;
  const objects = configMaps.list().length + pods.list().length;
  const cached = await settleGc();
  const pick = (m: NodeJS.MemoryUsage) => ({ rss: m.rss, heapUsed: m.heapUsed });
  const result: Measurement = { mode, objects, syncMs, baseline: pick(baseline), configMaps: pick(afterConfigMaps), cached: pick(cached) };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  informers.stop();
  await informers.closed();
  client.close();
}

function runChild(mode: Measurement['mode'], target: Target): Promise<Measurement> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', mode], { env: { ...process.env, BENCH_TARGET: JSON.stringify(target) }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (code !== 0 || !line) reject(new Error(`the ${mode} child exited with ${code}: ${out}`));
      else resolve(JSON.parse(line) as Measurement);
    });
  });
}

async function pool<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

async function must(cluster: Cluster, method: string, path: string, body: unknown, contentType?: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await cluster.request(method, path, body, { contentType });
      if (r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
      return;
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

function configMap(ns: string, i: number) {
  const body = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: `app-config-${i}`, namespace: ns, labels: { app: `app-${i % 50}`, tier: 'backend', 'app.kubernetes.io/managed-by': 'kubectl' } },
    data: {
      'application.properties': `server.port=8080\nlogging.level=info\nfeature.flags=a,b,c\ninstance=${i}\n`.repeat(3),
      'DATABASE_HOST': `db-${i % 7}.internal.example.com`,
      'CACHE_TTL': '300',
    },
  };
  // What `kubectl apply` (client-side) stores: the applied object in an annotation.
  return { ...body, metadata: { ...body.metadata, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify(body), 'team': 'platform' } } };
}

function pod(ns: string, i: number) {
  const app = `web-${i % 100}`;
  const container = (name: string, image: string, port: number) => ({
    name,
    image,
    imagePullPolicy: 'IfNotPresent',
    args: ['--port', String(port), '--log-format=json', '--metrics-addr=:9090'],
    ports: [{ name: 'http', containerPort: port, protocol: 'TCP' }, { name: 'metrics', containerPort: 9090, protocol: 'TCP' }].slice(0, name === 'app' ? 2 : 1),
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } } },
      { name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: `${app}-db`, key: 'url' } } },
      { name: 'LOG_LEVEL', value: 'info' },
      { name: 'CACHE_TTL', valueFrom: { configMapKeyRef: { name: `app-config-${i % 100}`, key: 'CACHE_TTL' } } },
      { name: 'GOMAXPROCS', value: '2' },
    ],
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
    readinessProbe: { httpGet: { path: '/ready', port, scheme: 'HTTP' }, periodSeconds: 10, timeoutSeconds: 2, successThreshold: 1, failureThreshold: 3 },
    livenessProbe: { httpGet: { path: '/healthz', port, scheme: 'HTTP' }, initialDelaySeconds: 10, periodSeconds: 20, timeoutSeconds: 2, successThreshold: 1, failureThreshold: 3 },
    volumeMounts: [
      { name: 'config', mountPath: '/etc/app', readOnly: true },
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'tls', mountPath: '/etc/tls', readOnly: true },
    ],
    securityContext: { runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
  });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `${app}-7d9f8c6b5-${i.toString(36).padStart(5, '0')}`,
      namespace: ns,
      labels: { app, 'pod-template-hash': '7d9f8c6b5', 'app.kubernetes.io/name': app, 'app.kubernetes.io/version': '1.4.2' },
      annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090' },
    },
    spec: {
      containers: [container('app', `registry.example.com/team/${app}:1.4.2`, 8080), container('sidecar', 'registry.example.com/infra/envoy:1.27.0', 15000)],
      volumes: [
        { name: 'config', configMap: { name: `app-config-${i % 100}`, defaultMode: 420 } },
        { name: 'tmp', emptyDir: { sizeLimit: '64Mi' } },
        { name: 'tls', secret: { secretName: `${app}-tls`, defaultMode: 420 } },
      ],
      automountServiceAccountToken: false,
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      securityContext: { runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000 },
      tolerations: [{ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }],
    },
  };
}

async function fill(cluster: Cluster): Promise<void> {
  const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `bench-${i}`);
  for (const ns of namespaces) {
    await must(cluster, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    // No controller manager here: the ServiceAccount admission of Pods needs "default" to exist.
    await must(cluster, 'POST', `/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } });
  }
  const t0 = Date.now();
  await pool(
    Array.from({ length: CONFIGMAPS }, (_, i) => i),
    CONCURRENCY,
    (i) => must(cluster, 'POST', `/api/v1/namespaces/${namespaces[i % NAMESPACES]}/configmaps`, configMap(namespaces[i % NAMESPACES]!, i)),
  );
  const t1 = Date.now();
  await pool(
    Array.from({ length: PODS }, (_, i) => i),
    CONCURRENCY,
    async (i) => {
      const ns = namespaces[i % NAMESPACES]!;
      const body = pod(ns, i);
      await must(cluster, 'PATCH', `/api/v1/namespaces/${ns}/pods/${body.metadata.name}?fieldManager=kube-controller-manager&force=true`, body, 'application/apply-patch+yaml');
    },
  );
  console.log(`filled ${CONFIGMAPS} ConfigMaps in ${((t1 - t0) / 1000).toFixed(1)} s and ${PODS} Pods (server-side apply) in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
}

async function objectBytes(cluster: Cluster, path: string): Promise<number> {
  const r = await cluster.request('GET', path);
  return r.body.length;
}

async function main(): Promise<void> {
  const childAt = process.argv.indexOf('--child');
  if (childAt !== -1) {
    await child(process.argv[childAt + 1] as Measurement['mode'], JSON.parse(process.env.BENCH_TARGET ?? '{}') as Target);
    return;
  }
  const cluster = await startCluster();
  try {
    await fill(cluster);
    const target: Target = { url: cluster.url, caPem: cluster.caPem, token: cluster.adminToken };
    const cmBytes = await objectBytes(cluster, '/api/v1/namespaces/bench-1/configmaps/app-config-1');
    const podBytes = await objectBytes(cluster, `/api/v1/namespaces/bench-1/pods/${pod('bench-1', 1).metadata.name}`);
    console.log(`one object as JSON from the API server: ConfigMap ${cmBytes} B, Pod ${podBytes} B`);
    const results: Measurement[] = [];
    for (const mode of ['stripped', 'unstripped'] as const) results.push(await runChild(mode, target));
    console.log('\nmode        objects  sync s   RSS MiB (delta)   heap MiB (delta)   heap B/ConfigMap   heap B/Pod');
    for (const r of results) {
      const drss = r.cached.rss - r.baseline.rss;
      const dheap = r.cached.heapUsed - r.baseline.heapUsed;
      const perCm = (r.configMaps.heapUsed - r.baseline.heapUsed) / CONFIGMAPS;
      const perPod = (r.cached.heapUsed - r.configMaps.heapUsed) / PODS;
      console.log(
        `${r.mode.padEnd(11)} ${String(r.objects).padStart(7)}  ${(r.syncMs / 1000).toFixed(1).padStart(6)}   ${mib(r.cached.rss).padStart(6)} (+${mib(drss)})   ${mib(r.cached.heapUsed).padStart(6)} (+${mib(dheap)})   ${String(Math.round(perCm)).padStart(16)}   ${String(Math.round(perPod)).padStart(10)}`,
      );
    }
    const file = `bench/results/informers-${new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z')}.json`;
    mkdirSync('bench/results', { recursive: true });
    writeFileSync(file, `${JSON.stringify({ configMaps: CONFIGMAPS, pods: PODS, cmBytes, podBytes, results }, null, 2)}\n`);
    console.log(`\nwritten to ${file}`);
  } finally {
    await cluster.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
