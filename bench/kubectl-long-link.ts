/**
 * The long link as kubectl in a CI job sees it: `kubectl get pods -A` with an empty cache directory
 * (so it makes its discovery requests first), over a link that adds 50 ms each way (bench/relay.ts
 * --delay-ms), two ways in the same run, interleaved:
 *
 * - direct: kubectl → the long link → the API server;
 * - through kas: kubectl → kas → tunnel over the long link → agentk → the API server.
 *
 * The API server is a small stand-in made here (discovery documents and a pod list, plain HTTP); it
 * counts the requests it gets: each is one round trip over the tunnel (an OPEN out, a REPLY back;
 * opening a stream costs no round trip of its own). Prints wall time per run (median over rounds)
 * and the requests per kubectl run.
 *
 *   node dist/bench/kubectl-long-link.js [--rounds 5] [--delay-ms 50]
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { runMain } from './lib/cli.js';
import { stopAll } from './lib/proc.js';
import { authHeaders, makeSecrets, startAgentk, startKas, startRelay, writeKubeconfig, type HostPort } from './lib/stack.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A stand-in API server: enough discovery for kubectl to list pods in all namespaces. */
function startApiServer(): Promise<{ address: HostPort; requests: string[]; close(): void }> {
  const requests: string[] = [];
  const json = (res: http.ServerResponse, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };
  const pods = Array.from({ length: 20 }, (_, i) => ({
    metadata: { name: `pod-${i}`, namespace: i % 2 ? 'default' : 'kube-system', uid: `uid-${i}`, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { containers: [{ name: 'main', image: 'busybox' }] },
    status: { phase: 'Running' },
  }));
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/small':
        requests.pop(); // the readiness probe of waitForPath, not kubectl's
        return json(res, { ok: true });
      case '/version':
        return json(res, { major: '1', minor: '32', gitVersion: 'v1.32.0-bench' });
      case '/api':
        return json(res, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] });
      case '/apis':
        return json(res, { kind: 'APIGroupList', apiVersion: 'v1', groups: [] });
      case '/api/v1':
        return json(res, {
          kind: 'APIResourceList',
          groupVersion: 'v1',
          resources: [{ name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: ['get', 'list', 'watch'], shortNames: ['po'] }],
        });
      case '/api/v1/pods':
        return json(res, { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '1' }, items: pods.map((p) => ({ apiVersion: 'v1', kind: 'Pod', ...p })) });
      default:
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 }));
    }
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ address: { host: '127.0.0.1', port }, requests, close: () => server.close() });
    });
  });
}

function kubeconfig(dir: string, name: string, server: string, token: string, caFile?: string): string {
  const file = join(dir, `${name}.kubeconfig`);
  writeFileSync(
    file,
    stringifyYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name, cluster: { server, ...(caFile ? { 'certificate-authority': caFile } : {}) } }],
      users: [{ name, user: { token } }],
      contexts: [{ name, context: { cluster: name, user: name } }],
      'current-context': name,
    }),
  );
  return file;
}

/** Waits until GET /small through kas's HTTPS proxy answers 200 (agentk connected). */
async function waitForHttps(entry: HostPort, headers: Record<string, string>, caFile: string): Promise<void> {
  const ca = readFileSync(caFile);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = https.get({ host: entry.host, port: entry.port, path: '/small', headers, ca, agent: false, timeout: 2000, servername: 'localhost' }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(0));
    });
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`kas's proxy does not answer 200 (last: ${status})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function kubectlGetPods(config: string, cacheDir: string): Promise<{ ms: number; ok: boolean; out: string }> {
  const start = performance.now();
  return new Promise((resolve) => {
    execFile('kubectl', ['--kubeconfig', config, '--cache-dir', cacheDir, 'get', 'pods', '-A', '--request-timeout', '30s'], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ ms: performance.now() - start, ok: !err, out: err ? `${stderr}${stdout}` : stdout });
    });
  });
}

async function main(): Promise<void> {
  const rounds = arg('--rounds', 5);
  const delayMs = arg('--delay-ms', 50);
  const tmp = mkdtempSync(join(os.tmpdir(), 'kas-kubectl-ll-'));
  const logDir = join(tmp, 'logs');
  mkdirSync(logDir);
  try {
    const api = await startApiServer();
    const secrets = await makeSecrets(join(tmp, 'secrets'));
    // direct: kubectl → long link → API server
    const directLink = await startRelay(logDir, 'link-direct', api.address, delayMs);
    // through kas: agentk dials kas through its own long link
    const kas = await startKas(logDir, { secrets, tls: false, proxyTls: true });
    const tunnelLink = await startRelay(logDir, 'link-tunnel', kas.agent, delayMs);
    await startAgentk(logDir, { secrets, tls: false, kasAgent: tunnelLink.address, kubeconfig: writeKubeconfig(tmp, api.address) });
    await waitForHttps(kas.proxy, authHeaders(secrets), secrets.certFile);
    const configs = {
      direct: kubeconfig(tmp, 'direct', `http://${directLink.address.host}:${directLink.address.port}`, 'bench-upstream-token'),
      'through-kas': kubeconfig(tmp, 'kas', `https://${kas.proxy.host}:${kas.proxy.port}`, `pat:1:${secrets.proxyToken}`, secrets.certFile),
    };
    const times: Record<string, number[]> = { direct: [], 'through-kas': [] };
    const counts: Record<string, number[]> = { direct: [], 'through-kas': [] };
    let sample = '';
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 ? (['through-kas', 'direct'] as const) : (['direct', 'through-kas'] as const);
      for (const name of order) {
        const cache = join(tmp, `cache-${name}-${round}`);
        const before = api.requests.length;
        const r = await kubectlGetPods(configs[name], cache);
        if (!r.ok) throw new Error(`kubectl ${name} failed: ${r.out}`);
        times[name]!.push(r.ms);
        counts[name]!.push(api.requests.length - before);
        if (round === 0 && name === 'through-kas') sample = api.requests.slice(before).join(', ');
        rmSync(cache, { recursive: true, force: true });
      }
      console.log(`round ${round + 1}/${rounds}: direct ${times.direct!.at(-1)!.toFixed(0)} ms, through kas ${times['through-kas']!.at(-1)!.toFixed(0)} ms (load average ${os.loadavg()[0]!.toFixed(2)})`);
    }
    console.log(`\nkubectl get pods -A, empty cache, link ${delayMs} ms each way (median of ${rounds}):`);
    for (const name of ['direct', 'through-kas']) {
      console.log(`  ${name.padEnd(12)} ${median(times[name]!).toFixed(0)} ms [${Math.min(...times[name]!).toFixed(0)}–${Math.max(...times[name]!).toFixed(0)}], ${median(counts[name]!)} requests to the API server`);
    }
    console.log(`  requests of one run: ${sample}`);
    console.log(`  through kas, each request is one tunnel round trip (${2 * delayMs} ms); the direct path also pays TCP connect (one more round trip) per new connection`);
    api.close();
  } finally {
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

runMain(main);
