/**
 * GitOps apply figures on a real kube-apiserver (e2e/support/cluster.ts), same run, same server:
 *
 * 1. agentk's applier applies a snapshot of N ConfigMap files (one object per file) into an empty
 *    namespace, then the same snapshot again (nothing changes); memory (RSS, heap used) is sampled
 *    every 10 ms while it applies, against a baseline after garbage collection.
 * 2. `kubectl apply --server-side -f <dir>` of the same files into another empty namespace, then
 *    again.
 * 3. The full path (a real kas reading a Git repository, a real agentk applying): P pushes, each a
 *    commit changing one ConfigMap and a git push notification; the time from the notification to
 *    the changed value being readable from the API server (p50, p90, max).
 *
 *   npm run bench:gitops -- [--objects 1000] [--pushes 20]
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Applier } from '../src/agent/gitops/applier.js';
import type { ManifestSnapshot } from '../src/agent/gitops/snapshot.js';
import { ApiServerClient } from '../src/agent/kubernetes-api/api-server.js';
import { KubeJson } from '../src/agent/kubernetes-api/kube-json.js';
import { createLogger } from '../src/shared/logger.js';
import { startCluster, type Cluster } from '../e2e/support/cluster.js';
import { gitlabToKasJwt } from '../test/support/fake-gitlab.js';
import { TestGitRepo } from '../test/support/git-repo.js';
import { Kubectl } from '../test/support/kubectl.js';
import { startStack } from '../test/support/stack.js';
import { numberFlag } from './lib/sequential-gets.js';

const OBJECTS = numberFlag('objects', 1000);
const PUSHES = numberFlag('pushes', 20);
const mib = (n: number) => Number((n / 1024 / 1024).toFixed(1));

function configMap(namespace: string | null, i: number): string {
  return `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${String(i).padStart(4, '0')}\n${namespace ? `  namespace: ${namespace}\n` : ''}  labels:\n    app: bench\ndata:\n  index: "${i}"\n  payload: ${randomBytes(96).toString('hex')}\n`;
}

async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage();
}

async function ensureNamespace(cluster: Cluster, name: string): Promise<void> {
  const r = await cluster.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  if (r.status !== 201 && r.status !== 409) throw new Error(`cannot create namespace ${name}: ${r.status}`);
}

function kubectlApply(k: Kubectl, dir: string): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    execFile('kubectl', ['apply', '--server-side', '--field-manager=bench', '-f', dir], { env: k.env(), maxBuffer: 64 * 1024 * 1024, timeout: 600_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`kubectl failed: ${stderr}`));
      else resolve(performance.now() - started);
    });
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main(): Promise<void> {
  const logger = createLogger({ name: 'bench', level: 'warn' });
  const cluster = await startCluster();
  const work = mkdtempSync(join(tmpdir(), 'bench-gitops-'));
  const results: Record<string, unknown> = { objects: OBJECTS, pushes: PUSHES, node: process.version, at: new Date().toISOString() };
  try {
    // 1. The applier.
    await ensureNamespace(cluster, 'bench-agentk');
    const files = Array.from({ length: OBJECTS }, (_, i) => ({ path: `cm-${i}.yaml`, data: Buffer.from(configMap(null, i)) }));
    const snapshot: ManifestSnapshot = {
      projectId: 'bench/configmaps',
      commit: 'b'.repeat(40),
      complete: true,
      errors: [],
      files,
      settings: { defaultNamespace: 'bench-agentk', reconcileTimeoutMs: 600_000, dryRunStrategy: 'none', prune: true, pruneTimeoutMs: 600_000, prunePropagationPolicy: 'background', inventoryPolicy: 'must_match' },
    };
    const client = new ApiServerClient({ url: new URL(cluster.url), tls: { ca: Buffer.from(cluster.caPem), rejectUnauthorized: true }, auth: { kind: 'token', token: cluster.adminToken }, source: 'bench' }, { logger });
    const applier = new Applier({ kube: new KubeJson(client), agentId: '1', logger });
    const baseline = await settledMemory();
    const peak = { rss: baseline.rss, heapUsed: baseline.heapUsed };
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      peak.rss = Math.max(peak.rss, m.rss);
      peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
    }, 10);
    let started = performance.now();
    const created = await applier.apply(snapshot);
    const createMs = performance.now() - started;
    started = performance.now();
    const again = await applier.apply(snapshot);
    const againMs = performance.now() - started;
    clearInterval(sampler);
    if (created.applied !== OBJECTS || again.unchanged !== OBJECTS) throw new Error(`unexpected results: ${JSON.stringify({ created: created.applied, errors: created.errors.slice(0, 3), unchanged: again.unchanged })}`);
    client.close();
    results.agentk = {
      createMs: Math.round(createMs),
      unchangedMs: Math.round(againMs),
      memoryMiB: { baselineRss: mib(baseline.rss), peakRss: mib(peak.rss), baselineHeapUsed: mib(baseline.heapUsed), peakHeapUsed: mib(peak.heapUsed) },
    };

    // 2. kubectl, the same files into another namespace.
    await ensureNamespace(cluster, 'bench-kubectl');
    const dir = join(work, 'manifests');
    mkdirSync(dir);
    for (let i = 0; i < OBJECTS; i++) writeFileSync(join(dir, `cm-${i}.yaml`), configMap('bench-kubectl', i));
    const kubectl = await Kubectl.create({ server: cluster.url, caPem: cluster.caPem, token: cluster.adminToken });
    const kubectlCreateMs = await kubectlApply(kubectl, dir);
    const kubectlAgainMs = await kubectlApply(kubectl, dir);
    results.kubectl = { createMs: Math.round(kubectlCreateMs), unchangedMs: Math.round(kubectlAgainMs) };

    // 3. The full path: push notification to object changed.
    const repo = new TestGitRepo(join(work, 'repo'));
    repo.commit({ 'cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pushed\ndata:\n  value: "0"\n' });
    mkdirSync(join(work, 'configs', 'agent-one'), { recursive: true });
    writeFileSync(join(work, 'configs', 'agent-one', 'config.yaml'), 'gitops:\n  manifest_projects:\n    - id: bench/push\n      default_namespace: bench-agentk\n');
    const secret = randomBytes(32);
    writeFileSync(join(work, 'api.secret'), secret.toString('base64'));
    const stack = await startStack({
      upstream: { url: cluster.url, caPem: cluster.caPem, token: cluster.adminToken },
      kas: {
        api: { listen: { address: '127.0.0.1:0', authentication_secret_file: join(work, 'api.secret') } },
        agent: { gitops: { poll_period: '1h', cache_dir: join(work, 'cache') }, configuration: { poll_period: '1h' } },
        standalone: { config_dir: join(work, 'configs'), manifest_projects: [{ id: 'bench/push', project_id: 90, git: { url: repo.dir } }] },
      },
      agent: { podNamespace: 'default', podName: 'bench-agentk', leaderElection: { leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 500 } },
    });
    const value = async () => ((await cluster.request('GET', '/api/v1/namespaces/bench-agentk/configmaps/pushed')).json as { data?: { value?: string } } | null)?.data?.value;
    const until = async (want: string, timeoutMs: number) => {
      const deadline = performance.now() + timeoutMs;
      while ((await value()) !== want) {
        if (performance.now() > deadline) throw new Error(`timed out waiting for value ${want}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const push = () =>
      new Promise<void>((resolve, reject) => {
        const body = Buffer.from(JSON.stringify({ project: { id: 90, full_path: 'bench/push' } }));
        const req = http.request(`http://${stack.kas.addresses.api}/api/v1/git_push_event`, { method: 'POST', headers: { authorization: `Bearer ${gitlabToKasJwt(secret)}`, 'content-type': 'application/json', 'content-length': String(body.length) } }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 204 ? resolve() : reject(new Error(`push answered ${res.statusCode}`))));
        });
        req.on('error', reject);
        req.end(body);
      });
    try {
      await until('0', 60_000);
      const latencies: number[] = [];
      for (let i = 1; i <= PUSHES; i++) {
        repo.commit({ 'cm.yaml': `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pushed\ndata:\n  value: "${i}"\n` });
        const t0 = performance.now();
        await push();
        await until(String(i), 60_000);
        latencies.push(performance.now() - t0);
      }
      latencies.sort((a, b) => a - b);
      results.pushToApplied = { p50Ms: Math.round(percentile(latencies, 50)), p90Ms: Math.round(percentile(latencies, 90)), maxMs: Math.round(latencies.at(-1)!) };
    } finally {
      await stack.close();
    }
  } finally {
    await cluster.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const out = JSON.stringify(results, null, 2);
  console.log(out);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/gitops-apply-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}Z.json`, `${out}\n`);
}

await main();
process.exit(0);
