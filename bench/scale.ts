/**
 * `npm run bench:scale` (also `npm run bench -- --scale`): many idle agents on one kas.
 *
 * For ws:// and then wss://: start kas (its own process, open-files limit raised), connect
 * N idle agents (default 10,000) from several client processes (bench/scale-client.ts: real
 * WebSockets running the protocol's Session with HELLO, like agentk), and report
 *
 *   idle-agent   kas RSS growth ÷ connected agents (KiB per idle agent), plus kas's own heap and
 *                external memory from its /metrics, and the CPU kas spends on idle sessions;
 *   reconnect    SIGKILL kas, start it again on the same port, and time until every agent is
 *                connected again; the clients use agentk's jittered exponential backoff, and the
 *                per-second connection counts show whether they came back as a herd.
 *
 * Options: --agents N (default 10000), --clients K (default 4), --quick (2,000 agents),
 * --only ws|wss, --json-out FILE (also write the result there, for bench/run.ts).
 * When N cannot be reached, the largest number that worked is measured and 10,000 is
 * extrapolated from it, marked as such.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { cpuMs, killAllNow, rssBytes, run, sleep, stopAll, stopProcess } from './lib/proc.js';
import { DIST, makeSecrets, ROOT, startKas, type Kas, type KasOptions } from './lib/stack.js';
import { round } from './lib/stats.js';
import { scrape } from './lib/tools.js';

const MiB = 1024 * 1024;
const TARGET_AGENTS = 10_000;

interface Options {
  agents: number;
  clients: number;
  quick: boolean;
  variants: ('ws' | 'wss')[];
  jsonOut: string | null;
  keep: boolean;
}

function parseOptions(argv: string[]): Options {
  const value = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const quick = argv.includes('--quick');
  const only = value('--only');
  return {
    quick,
    agents: Number(value('--agents') ?? (quick ? 2000 : TARGET_AGENTS)),
    clients: Number(value('--clients') ?? 4),
    variants: only ? [only as 'ws' | 'wss'] : ['ws', 'wss'],
    jsonOut: value('--json-out') ?? null,
    keep: argv.includes('--keep'),
  };
}

interface ClientReport {
  ready: number;
  attempts: number;
  failures: number;
  connects: [number, number][];
}

class ClientProc {
  readonly child: ChildProcess;
  last: ClientReport = { ready: 0, attempts: 0, failures: 0, connects: [] };
  /** Successful connects per epoch second, over the whole run. */
  readonly connects = new Map<number, number>();

  constructor(nofile: number) {
    // sh raises the open-files limit, then execs node; the IPC channel survives the exec.
    this.child = spawn('sh', ['-c', `ulimit -n ${nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`, process.execPath, join(DIST, 'bench/scale-client.js')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (r: ClientReport) => {
      this.last = r;
      for (const [sec, n] of r.connects) this.connects.set(sec, (this.connects.get(sec) ?? 0) + n);
    });
  }

  start(url: string, token: string, n: number, ca: string | undefined): void {
    this.child.send({ cmd: 'start', url, token, n, ca, rampConcurrency: 64 });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    try {
      this.child.send({ cmd: 'stop' });
    } catch {
      /* already gone */
    }
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}

function totalReady(clients: ClientProc[]): number {
  return clients.reduce((a, c) => a + c.last.ready, 0);
}

/** Waits until `want` agents are ready; returns when, or null at the deadline (or when progress stalls for stallMs). */
async function waitReady(clients: ClientProc[], want: number, timeoutMs: number, stallMs = 30_000): Promise<number | null> {
  const t0 = performance.now();
  let best = -1;
  let bestAt = t0;
  for (;;) {
    const ready = totalReady(clients);
    if (ready >= want) return performance.now();
    if (ready > best) {
      best = ready;
      bestAt = performance.now();
    }
    if (performance.now() - t0 > timeoutMs || performance.now() - bestAt > stallMs) return null;
    await sleep(100);
  }
}

async function hardNofile(): Promise<number> {
  const r = await run('sh', ['-c', 'ulimit -Hn']);
  const n = Number(r.stdout.trim());
  return Number.isFinite(n) ? n : 1024;
}

interface VariantResult {
  transport: 'ws' | 'wss';
  agentsWanted: number;
  agentsConnected: number;
  rampSeconds: number | null;
  kasRssBaselineMiB: number;
  kasRssConnectedMiB: number;
  idleKiBPerAgent: number | null;
  heapKiBPerAgent: number | null;
  externalKiBPerAgent: number | null;
  kasIdleCpuPercent: number | null;
  extrapolated: boolean;
  reconnect: {
    kasRestartMs: number | null;
    allBackSeconds: number | null;
    agentsBack: number;
    peakConnectsPerSecond: number;
    connectsPerSecond: number[];
    failedAttempts: number;
    attempts: number;
  } | null;
  notes: string[];
}

async function runVariant(o: Options, transport: 'ws' | 'wss', dir: string, logDir: string): Promise<VariantResult> {
  const notes: string[] = [];
  const secrets = await makeSecrets(join(dir, `secrets-${transport}`));
  const token = readFileSync(secrets.agentTokenFile, 'utf8').trim();
  const hard = await hardNofile();
  const kasNofile = Math.max(o.agents + 2048, 65_536);
  const kasOptions: KasOptions = {
    secrets,
    tls: transport === 'wss',
    name: `kas-scale-${transport}`,
    nofile: kasNofile,
  };
  // One token stands in for every agent here: lift the per-token connection rate limit where kas has one.
  const example = readFileSync(join(ROOT, 'kas.example.yaml'), 'utf8');
  if (/connections_per_token_per_minute/.test(example)) kasOptions.agentListenExtra = { connections_per_token_per_minute: 10_000_000 };
  const configFile = join(dir, `kas-scale-${transport}.yaml`);
  let kas: Kas = await startKas(logDir, kasOptions, configFile);
  const limit = Number((await run('sh', ['-c', `grep 'Max open files' /proc/${kas.proc.pid}/limits`])).stdout.trim().split(/\s+/)[3]);
  if (limit < o.agents + 100) notes.push(`kas may open only ${limit} files (hard limit ${hard}): fewer than ${o.agents} agents can connect`);
  const url = `${transport}://${kas.agent.host}:${kas.agent.port}/`;
  const ca = transport === 'wss' ? readFileSync(secrets.certFile, 'utf8') : undefined;
  await sleep(1500);
  const base = rssBytes(kas.proc.pid);
  const metricNames = ['nodejs_heap_size_used_bytes', 'nodejs_external_memory_bytes', 'kas_agent_sessions'];
  const baseMetrics = await scrape(kas.observability, metricNames);

  const perClient = Math.ceil(o.agents / o.clients);
  const clients: ClientProc[] = [];
  for (let i = 0; i < o.clients; i++) {
    const n = Math.min(perClient, o.agents - i * perClient);
    if (n <= 0) break;
    const c = new ClientProc(Math.max(n + 1024, 4096));
    clients.push(c);
    c.start(url, token, n, ca);
  }
  const t0 = performance.now();
  console.log(`${transport}: connecting ${o.agents} idle agents from ${clients.length} client processes`);
  const progress = setInterval(() => console.log(`  ${totalReady(clients)} connected`), 5000);
  const rampDone = await waitReady(clients, o.agents, 240_000);
  clearInterval(progress);
  const connected = totalReady(clients);
  if (rampDone === null) notes.push(`only ${connected} of ${o.agents} agents connected`);
  console.log(`  ${connected} agents connected${rampDone ? ` in ${((rampDone - t0) / 1000).toFixed(1)} s` : ''}`);

  // Let the connections settle (handshakes, first pings), then measure.
  await sleep(o.quick ? 3000 : 6000);
  let rss = 0;
  for (let i = 0; i < 5; i++) {
    rss += rssBytes(kas.proc.pid) / 5;
    await sleep(200);
  }
  const metrics = await scrape(kas.observability, metricNames);
  const cpu0 = cpuMs(kas.proc.pid);
  const idleWindow = o.quick ? 3000 : 10_000;
  await sleep(idleWindow);
  const idleCpu = ((cpuMs(kas.proc.pid) - cpu0) / idleWindow) * 100;
  const agents = totalReady(clients);
  const perAgent = agents > 0 ? (rss - base) / agents / 1024 : null;
  const heapPer = agents > 0 && metrics && baseMetrics && metrics.nodejs_heap_size_used_bytes !== undefined ? (metrics.nodejs_heap_size_used_bytes - (baseMetrics.nodejs_heap_size_used_bytes ?? 0)) / agents / 1024 : null;
  const extPer = agents > 0 && metrics && baseMetrics && metrics.nodejs_external_memory_bytes !== undefined ? (metrics.nodejs_external_memory_bytes - (baseMetrics.nodejs_external_memory_bytes ?? 0)) / agents / 1024 : null;
  console.log(`  kas RSS ${(base / MiB).toFixed(1)} → ${(rss / MiB).toFixed(1)} MiB: ${perAgent?.toFixed(1)} KiB per idle agent (heap ${heapPer?.toFixed(1)} KiB, external ${extPer?.toFixed(1)} KiB; kas sessions gauge ${metrics?.kas_agent_sessions}); kas CPU while idle ${idleCpu.toFixed(1)} %`);

  // Reconnect after a crash: SIGKILL, restart on the same port, wait for every agent.
  let reconnect: VariantResult['reconnect'] = null;
  if (agents > 0) {
    const before = { attempts: clients.reduce((a, c) => a + c.last.attempts, 0), failures: clients.reduce((a, c) => a + c.last.failures, 0) };
    const killAt = Date.now();
    const k0 = performance.now();
    await stopProcess(kas.proc, 'SIGKILL');
    // Same configuration, same port: the agents' address does not change.
    kasOptions.agentListen = `${kas.agent.host}:${kas.agent.port}`;
    let restartMs = 0;
    kas = await startKas(logDir, kasOptions, configFile, () => (restartMs = performance.now() - k0));
    console.log(`  kas killed and restarted: its agent listener was up again on port ${kas.agent.port} ${restartMs.toFixed(0)} ms after the kill; waiting for ${agents} agents`);
    const progress2 = setInterval(() => console.log(`  ${totalReady(clients)} back`), 5000);
    const back = await waitReady(clients, agents, 180_000, 70_000);
    clearInterval(progress2);
    await sleep(600);
    const perSecond: number[] = [];
    for (const c of clients) {
      for (const [sec, n] of c.connects) {
        const i = sec - Math.floor(killAt / 1000);
        if (i >= 0) perSecond[i] = (perSecond[i] ?? 0) + n;
      }
    }
    const series = Array.from({ length: perSecond.length }, (_, i) => perSecond[i] ?? 0);
    const after = { attempts: clients.reduce((a, c) => a + c.last.attempts, 0), failures: clients.reduce((a, c) => a + c.last.failures, 0) };
    reconnect = {
      kasRestartMs: Math.round(restartMs),
      allBackSeconds: back === null ? null : round((back - k0) / 1000, 2),
      agentsBack: totalReady(clients),
      peakConnectsPerSecond: Math.max(0, ...series),
      connectsPerSecond: series,
      attempts: after.attempts - before.attempts,
      failedAttempts: after.failures - before.failures,
    };
    if (back === null) notes.push(`only ${reconnect.agentsBack} of ${agents} agents were back when the wait ended`);
    console.log(`  ${reconnect.agentsBack} agents back${back ? ` ${reconnect.allBackSeconds} s after the kill` : ''}; ${reconnect.attempts} attempts (${reconnect.failedAttempts} failed); connects per second: ${series.join(' ')}`);
  }
  await Promise.all(clients.map((c) => c.stop()));
  await stopProcess(kas.proc, 'SIGKILL');
  return {
    transport,
    agentsWanted: o.agents,
    agentsConnected: agents,
    rampSeconds: rampDone ? round((rampDone - t0) / 1000, 2) : null,
    kasRssBaselineMiB: round(base / MiB, 1),
    kasRssConnectedMiB: round(rss / MiB, 1),
    idleKiBPerAgent: perAgent === null ? null : round(perAgent, 2),
    heapKiBPerAgent: heapPer === null ? null : round(heapPer, 2),
    externalKiBPerAgent: extPer === null ? null : round(extPer, 2),
    kasIdleCpuPercent: round(idleCpu, 2),
    extrapolated: agents < TARGET_AGENTS,
    reconnect,
    notes,
  };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  process.on('exit', killAllNow);
  const started = new Date();
  const loadStart = os.loadavg().map((x) => round(x, 2));
  const tmp = mkdtempSync(join(os.tmpdir(), 'kas-scale-'));
  const logDir = join(tmp, 'logs');
  mkdirSync(logDir);
  console.log(`scale test: ${o.agents} idle agents on one kas, ${o.clients} client processes, ${o.variants.join(' and ')}; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const results: VariantResult[] = [];
  let ok = false;
  try {
    for (const v of o.variants) results.push(await runVariant(o, v, tmp, logDir));
    const get = (t: 'ws' | 'wss') => results.find((r) => r.transport === t);
    const notes: string[] = [];
    for (const r of results) {
      notes.push(...r.notes.map((n) => `${r.transport}: ${n}`));
      if (r.extrapolated) notes.push(`${r.transport}: measured with ${r.agentsConnected} agents, not ${TARGET_AGENTS}: the per-agent memory is extrapolated to ${TARGET_AGENTS} (about ${r.idleKiBPerAgent === null ? '-' : ((r.idleKiBPerAgent * TARGET_AGENTS) / 1024).toFixed(0)} MiB) and the reconnect time is for ${r.agentsConnected} agents`);
    }
    const summary = {
      agents: o.agents,
      idleKiBPerAgent: { ws: get('ws')?.idleKiBPerAgent ?? null, wss: get('wss')?.idleKiBPerAgent ?? null },
      reconnectSeconds: { ws: get('ws')?.reconnect?.allBackSeconds ?? null, wss: get('wss')?.reconnect?.allBackSeconds ?? null },
      peakConnectsPerSecond: { ws: get('ws')?.reconnect?.peakConnectsPerSecond ?? null, wss: get('wss')?.reconnect?.peakConnectsPerSecond ?? null },
      extrapolated: results.some((r) => r.extrapolated),
      note: notes.length ? notes.join('; ') : undefined,
    };
    console.log('\n=== scale ===');
    for (const r of results) {
      console.log(`${r.transport.padEnd(4)} ${r.agentsConnected} agents: ${r.idleKiBPerAgent} KiB per idle agent (target ≤ ${r.transport === 'ws' ? '10 KB' : '40 KB'}): ${r.idleKiBPerAgent === null ? 'n/a' : r.idleKiBPerAgent * 1024 <= (r.transport === 'ws' ? 10_000 : 40_000) ? 'PASS' : 'FAIL'}; all back ${r.reconnect?.allBackSeconds ?? '-'} s after a kas restart (target ≤ 60 s): ${r.reconnect?.allBackSeconds == null ? 'n/a' : r.reconnect.allBackSeconds <= 60 ? 'PASS' : 'FAIL'}; peak ${r.reconnect?.peakConnectsPerSecond ?? '-'} connects/s`);
    }
    for (const n of notes) console.log(`note: ${n}`);
    const cpus = os.cpus();
    const json = {
      benchmark: 'scale',
      date: started.toISOString(),
      mode: o.quick ? 'quick' : 'full',
      machine: { cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', node: process.version, kernel: os.release(), loadAverageStart: loadStart, loadAverageEnd: os.loadavg().map((x) => round(x, 2)), openFilesHardLimit: await hardNofile() },
      config: { agents: o.agents, clients: o.clients, backoff: 'agentk default: full jitter, base 1 s, cap 60 s, reset after 60 s up' },
      summary,
      results,
    };
    const dir = join(ROOT, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `scale-${started.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}${o.quick ? '-quick' : ''}.json`);
    writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
    console.log(`wrote ${file}`);
    if (o.jsonOut) writeFileSync(o.jsonOut, JSON.stringify({ ...json, file }));
    ok = true;
  } finally {
    await stopAll();
    if (ok && !o.keep) rmSync(tmp, { recursive: true, force: true });
    else console.log(`logs kept in ${logDir}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
