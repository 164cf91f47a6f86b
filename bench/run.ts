/**
 * `npm run bench`: the end-to-end benchmark of the tunnel (docs: bench/README.md; the figures and
 * targets are those of the performance design). Every process on a path is its own program on
 * loopback: the upstream, the relays, kas, agentk, sshd and ssh, and the clients (wrk, curl, the
 * Node load generator). Every figure is measured on every path in the same round, interleaved:
 *
 *   direct    client → upstream
 *   ceiling   client → relay → relay → upstream (plain TCP pipes: the limit of any two-process design)
 *   ours-ws   client → kas → ws:// tunnel → agentk → upstream
 *   ours-wss  client → kas → wss:// tunnel → agentk → upstream
 *   ssh       client → sshd → ssh -R (aes128-gcm) → upstream
 *
 * Options: --quick (about a minute), --rounds N, --scale (also run bench/scale.ts), --no-ssh,
 * --no-long-link, --only fig,fig (bulk,rps-1,rps-32,hol,burst,half-close,stalled), --profile
 * (CPU profiles of kas and agentk instead of the tables), --keep (keep the temporary folder).
 *
 * Not a test: it asserts nothing; it prints numbers, ratios and pass/fail marks against targets.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { cpuMs, have, killAllNow, rssBytes, run, sleep, stopAll, stopProcess } from './lib/proc.js';
import { authHeaders, baseUrl, ceilingPath, directPath, makeSecrets, oursPath, ROOT, DIST, sshPath, startSshd, startUpstream, type HostPort, type Member, type OursPath, type Path, type Secrets, type Sshd } from './lib/stack.js';
import { fmt, fmtSpread, median, round, spread, table, type Spread } from './lib/stats.js';
import { curlBulk, LoadGen, scrape, startHeld, Wrk, type WrkResult } from './lib/tools.js';
import { longLinkTest, type LongLinkResult } from './lib/longlink.js';
import { profileRun } from './lib/profile.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const KiB = 1024;

type PathName = 'direct' | 'ceiling' | 'ours-ws' | 'ours-wss' | 'ssh';
const OURS: readonly PathName[] = ['ours-ws', 'ours-wss'];

const FIGURES = ['bulk', 'rps-1', 'rps-32', 'hol', 'burst', 'half-close', 'stalled'] as const;
type FigureGroup = (typeof FIGURES)[number];

interface Options {
  quick: boolean;
  rounds: number;
  bulkBytes: number;
  warmBulkBytes: number;
  rpsSeconds: number;
  holSeconds: number;
  stalledStreams: number;
  /** Rounds (1-based) in which the stalled figure is measured (it starts fresh processes). */
  stalledRounds: number[];
  stalledPaths: PathName[];
  burst: number;
  burstWarmRepeats: number;
  scale: boolean;
  ssh: boolean;
  longLink: boolean;
  longLinkSeconds: number;
  only: Set<FigureGroup>;
  profile: boolean;
  keep: boolean;
}

function parseOptions(argv: string[]): Options {
  const quick = argv.includes('--quick');
  const value = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const rounds = Number(value('--rounds') ?? (quick ? 2 : 5));
  const only = value('--only');
  return {
    quick,
    rounds,
    bulkBytes: quick ? 256 * MiB : GiB,
    warmBulkBytes: quick ? 16 * MiB : 128 * MiB,
    rpsSeconds: quick ? 1 : 4,
    holSeconds: quick ? 1 : 4,
    stalledStreams: 50,
    stalledRounds: quick ? [rounds] : Array.from({ length: rounds }, (_, i) => i + 1),
    stalledPaths: quick ? ['ours-ws', 'ours-wss'] : ['ceiling', 'ours-ws', 'ours-wss', 'ssh'],
    burst: 1000,
    burstWarmRepeats: quick ? 1 : 3,
    scale: argv.includes('--scale'),
    ssh: !argv.includes('--no-ssh'),
    longLink: !argv.includes('--no-long-link'),
    longLinkSeconds: quick ? 2 : 8,
    only: new Set((only ? only.split(',') : FIGURES) as FigureGroup[]),
    profile: argv.includes('--profile'),
    keep: argv.includes('--keep'),
  };
}

// ---- results ---------------------------------------------------------------------------------

/** Figure name → path → one value per round (null: failed or not measured). */
type Raw = Record<string, Partial<Record<PathName, (number | null)[]>>>;

interface Context {
  opts: Options;
  tmp: string;
  logDir: string;
  secrets: Secrets;
  headers: Record<string, string>;
  upstream: { pid: number; address: HostPort };
  paths: Map<PathName, Path>;
  sshd: Sshd | null;
  wrk: Wrk;
  lg: LoadGen;
  raw: Raw;
  /** Figure → path → per-round details (CPU per process, client CPU, errors, ...). */
  details: Record<string, Partial<Record<PathName, unknown[]>>>;
  notes: string[];
  round: number;
  /** Wall time spent per phase, s (to keep the quick mode quick). */
  phaseSeconds: Record<string, number>;
}

function record(ctx: Context, figure: string, path: PathName, value: number | null, detail?: unknown): void {
  const byPath = (ctx.raw[figure] ??= {});
  const list = (byPath[path] ??= Array.from({ length: ctx.opts.rounds }, () => null));
  list[ctx.round - 1] = value === null ? null : round(value, 4);
  if (detail !== undefined) {
    const d = ((ctx.details[figure] ??= {})[path] ??= Array.from({ length: ctx.opts.rounds }, () => null));
    d[ctx.round - 1] = detail;
  }
}

function note(ctx: Context, text: string): void {
  ctx.notes.push(`round ${ctx.round}: ${text}`);
  console.log(`  ! ${text}`);
}

// ---- CPU accounting ----------------------------------------------------------------------------

function members(ctx: Context, path: Path): Member[] {
  return [...path.members(), { role: 'upstream', pid: ctx.upstream.pid }];
}

function cpuSnapshot(list: Member[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const { role, pid } of list) m.set(role, (m.get(role) ?? 0) + cpuMs(pid));
  return m;
}

function cpuDelta(before: Map<string, number>, list: Member[]): Record<string, number> {
  const after = cpuSnapshot(list);
  const out: Record<string, number> = {};
  for (const [role, ms] of after) out[role] = Math.round(ms - (before.get(role) ?? 0));
  return out;
}

// ---- the figures -------------------------------------------------------------------------------

async function figureBulk(ctx: Context, name: PathName, path: Path, bytes: number, store = true): Promise<void> {
  const list = members(ctx, path);
  const before = cpuSnapshot(list);
  const r = await curlBulk(`${baseUrl(path)}/big?bytes=${bytes}`, bytes, ctx.headers, 300_000);
  if (!store) return;
  const cpu = { ...cpuDelta(before, list), client: Math.round(r.clientCpuMs ?? 0) };
  record(ctx, 'bulk', name, r.mbps, { seconds: round(r.seconds), cpuMs: cpu });
  console.log(`  bulk      ${name.padEnd(9)} ${fmt(r.mbps).padStart(7)} MB/s  (${round(r.seconds, 2)} s; CPU ms ${JSON.stringify(cpu)})`);
}

async function wrkSmall(ctx: Context, path: Path, connections: number, seconds: number): Promise<{ r: WrkResult; cpu: Record<string, number> }> {
  const list = members(ctx, path);
  const before = cpuSnapshot(list);
  const r = await ctx.wrk.run(`${baseUrl(path)}/small`, connections, seconds, ctx.headers);
  const cpu = { ...cpuDelta(before, list), client: Math.round(r.clientCpuMs ?? 0) };
  return { r, cpu };
}

async function figureRps(ctx: Context, name: PathName, path: Path, connections: number): Promise<void> {
  const { r, cpu } = await wrkSmall(ctx, path, connections, ctx.opts.rpsSeconds);
  const fig = `rps-${connections}`;
  const ok = r.errors === 0 && r.requests > 0;
  if (!ok) note(ctx, `${fig} ${name}: ${r.errors} errors (connect ${r.connectErrors}, read ${r.readErrors}, write ${r.writeErrors}, status ${r.statusErrors}, timeout ${r.timeouts}) of ${r.requests}`);
  const detail = { requests: r.requests, errors: r.errors, p50Ms: r.p50Us / 1000, p99Ms: r.p99Us / 1000, p999Ms: r.p999Us / 1000, maxMs: r.maxUs / 1000, cpuMs: cpu, cpuUsPerRequest: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, round((v * 1000) / Math.max(1, r.requests), 1)])) };
  record(ctx, fig, name, ok ? r.rps : null, detail);
  if (connections === 1) record(ctx, 'p99-1', name, ok ? r.p99Us / 1000 : null);
  if (connections === 32) record(ctx, 'p99-32', name, ok ? r.p99Us / 1000 : null);
  console.log(`  ${fig.padEnd(9)} ${name.padEnd(9)} ${fmt(r.rps).padStart(7)} req/s  p50 ${fmt(r.p50Us / 1000)} ms  p99 ${fmt(r.p99Us / 1000)} ms  (CPU µs/req ${JSON.stringify(detail.cpuUsPerRequest)})`);
}

async function figureHol(ctx: Context, name: PathName, path: Path): Promise<void> {
  const url = baseUrl(path);
  const held = await startHeld<{ bulkMBps: number }>(ctx.lg, { job: 'holbg', stallUrl: `${url}/stream`, bulkUrl: `${url}/stream`, headers: ctx.headers }, 20_000);
  let r: WrkResult;
  try {
    ({ r } = await wrkSmall(ctx, path, 1, ctx.opts.holSeconds));
  } finally {
    ctx.lg.release();
  }
  const bg = await held.done;
  const ok = r.errors === 0 && r.requests > 0;
  record(ctx, 'hol', name, ok ? r.p99Us / 1000 : null, { requests: r.requests, errors: r.errors, p50Ms: r.p50Us / 1000, bulkMBpsBeside: round(bg.bulkMBps, 1), ready: held.ready });
  record(ctx, 'hol-bulk', name, bg.bulkMBps);
  console.log(`  hol       ${name.padEnd(9)} p99 ${fmt(r.p99Us / 1000)} ms  p50 ${fmt(r.p50Us / 1000)} ms  ${fmt(r.rps)} req/s beside a stalled stream and ${fmt(bg.bulkMBps)} MB/s of bulk`);
}

interface BurstOnce {
  ms: number;
  ok: number;
  failed: number;
  statuses: number[];
}

async function figureBurst(ctx: Context, name: PathName, path: Path): Promise<void> {
  const r = await ctx.lg.job<{ cold: BurstOnce; warm: BurstOnce[] }>({ job: 'burst', url: `${baseUrl(path)}/small`, n: ctx.opts.burst, warmRepeats: ctx.opts.burstWarmRepeats, headers: ctx.headers });
  const all = [r.cold, ...r.warm];
  const failed = all.reduce((a, b) => a + b.failed, 0);
  if (failed > 0) note(ctx, `burst ${name}: ${failed} requests failed (statuses ${[...new Set(all.flatMap((b) => b.statuses))].join(',')})`);
  const warm = median(r.warm.map((w) => w.ms));
  record(ctx, 'burst', name, r.warm.every((w) => w.failed === 0) ? warm : null, { coldMs: round(r.cold.ms, 1), warmMs: r.warm.map((w) => round(w.ms, 1)), failed });
  record(ctx, 'burst-cold', name, r.cold.failed === 0 ? r.cold.ms : null);
  console.log(`  burst     ${name.padEnd(9)} ${ctx.opts.burst} concurrent: warm ${fmt(warm)} ms, cold (new connections) ${fmt(r.cold.ms)} ms${failed ? `, ${failed} failed` : ''}`);
}

async function figureHalfClose(ctx: Context, name: PathName, path: Path): Promise<void> {
  const r = await ctx.lg.job<{ pass: boolean; status: number; why: string; ms: number; reply: string }>({ job: 'halfclose', host: path.entry.host, port: path.entry.port, path: '/halfclose', headers: ctx.headers });
  record(ctx, 'half-close', name, r.pass ? 1 : 0, { status: r.status, why: r.why, ms: round(r.ms, 1), reply: r.pass ? undefined : r.reply });
  console.log(`  half-close ${name.padEnd(8)} ${r.pass ? 'pass' : 'FAIL'} (${r.why}, HTTP ${r.status || '-'}, ${fmt(r.ms)} ms)`);
}

/** Sum of RSS per role, averaged over a few samples. */
async function rssByRole(list: Member[], samples = 3, gapMs = 200): Promise<Record<string, number>> {
  const sum: Record<string, number> = {};
  for (let i = 0; i < samples; i++) {
    for (const { role, pid } of list) sum[role] = (sum[role] ?? 0) + rssBytes(pid) / samples;
    if (i < samples - 1) await sleep(gapMs);
  }
  return sum;
}

/** A fresh path of the given kind, for the stalled figure (RSS growth is only honest on a fresh process). */
async function freshPath(ctx: Context, name: PathName): Promise<Path | null> {
  const up = ctx.upstream.address;
  if (name === 'ceiling') return ceilingPath(ctx.logDir, up);
  if (name === 'ours-ws' || name === 'ours-wss') return oursPath(ctx.logDir, ctx.secrets, up, name === 'ours-wss');
  if (name === 'ssh') return ctx.sshd ? sshPath(ctx.logDir, ctx.sshd, up, 'ssh-fresh') : null;
  return null;
}

const MEMORY_METRICS = ['nodejs_external_memory_bytes', 'nodejs_heap_size_used_bytes', 'kas_tunnel_buffered_bytes'];

async function figureStalled(ctx: Context, name: PathName): Promise<void> {
  if (name === 'direct') return;
  const path = await freshPath(ctx, name);
  if (!path) return;
  const n = ctx.opts.stalledStreams;
  try {
    const url = `${baseUrl(path)}/stream`;
    // Warm the code paths (a few requests, a bulk transfer, a stall and release) before the baseline.
    if (!ctx.opts.quick) await ctx.wrk.run(`${baseUrl(path)}/small`, 4, 1, ctx.headers);
    await curlBulk(`${baseUrl(path)}/big?bytes=${16 * MiB}`, 16 * MiB, ctx.headers, 60_000);
    const warm = await startHeld(ctx.lg, { job: 'stall', url, n: 5, headers: ctx.headers }, 20_000);
    await sleep(300);
    ctx.lg.release();
    await warm.done;
    await sleep(700);
    const list = path.members();
    const ours = path as Partial<OursPath>;
    const metricsBefore = ours.kas ? await scrape(ours.kas.observability, MEMORY_METRICS) : null;
    const before = await rssByRole(list);
    const held = await startHeld<{ opened: number }>(ctx.lg, { job: 'stall', url, n, headers: ctx.headers }, 30_000);
    // Let the stalled streams fill every buffer on the way, then wait for RSS to settle.
    const t0 = performance.now();
    const maxMs = ctx.opts.quick ? 1500 : 5000;
    let last = 0;
    let stableSince = performance.now();
    for (;;) {
      await sleep(250);
      const total = list.reduce((a, m) => a + rssBytes(m.pid), 0);
      if (Math.abs(total - last) > total * 0.005) stableSince = performance.now();
      last = total;
      if (performance.now() - stableSince > 1000 && performance.now() - t0 > 1000) break;
      if (performance.now() - t0 > maxMs) break;
    }
    const after = await rssByRole(list);
    const metricsAfter = ours.kas ? await scrape(ours.kas.observability, MEMORY_METRICS) : null;
    // What agentk holds of the stalled responses, counted by its own buffers (RSS also moves with garbage not yet collected).
    const agentkMetrics = ours.agentkObservability ? await scrape(ours.agentkObservability, ['agentk_kubernetes_api_buffered_bytes']) : null;
    const agentkBuffered = agentkMetrics?.agentk_kubernetes_api_buffered_bytes;
    ctx.lg.release();
    const done = await held.done;
    const opened = Number(held.ready.opened ?? 0);
    if (opened !== n) note(ctx, `stalled ${name}: only ${opened} of ${n} streams opened (statuses ${JSON.stringify(held.ready.statuses)})`);
    const perStream: Record<string, number> = {};
    for (const role of Object.keys(after)) perStream[role] = round((after[role]! - (before[role] ?? 0)) / Math.max(1, opened) / KiB, 1);
    const total = Object.values(perStream).reduce((a, b) => a + b, 0);
    record(ctx, 'stalled', name, opened > 0 ? total : null, {
      streams: opened,
      kibPerStream: perStream,
      rssBeforeMiB: Object.fromEntries(Object.entries(before).map(([k, v]) => [k, round(v / MiB, 1)])),
      rssAfterMiB: Object.fromEntries(Object.entries(after).map(([k, v]) => [k, round(v / MiB, 1)])),
      kasMetricsBefore: metricsBefore,
      kasMetricsAfter: metricsAfter,
      agentkBufferedKiBPerStream: agentkBuffered !== undefined && opened > 0 ? round(agentkBuffered / opened / KiB, 1) : null,
      settleMs: Math.round(performance.now() - t0),
      result: done,
    });
    for (const [role, v] of Object.entries(perStream)) {
      if (role === 'kas' || role === 'agentk') record(ctx, `stalled-${role}`, name, v);
    }
    // agentk's RSS moves with the garbage of everything that passed through (the window kas grew);
    // its own count of the bytes it holds is the figure the target is about.
    if (agentkBuffered !== undefined && opened > 0) record(ctx, 'stalled-agentk-buffers', name, agentkBuffered / opened / KiB);
    const buffered = metricsAfter?.kas_tunnel_buffered_bytes;
    console.log(`  stalled   ${name.padEnd(9)} ${fmt(total)} KiB per stalled stream (${Object.entries(perStream).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}; ${opened} streams${buffered !== undefined ? `; kas_tunnel_buffered_bytes ${fmt(buffered / opened / KiB)} KiB/stream` : ''}${agentkBuffered !== undefined ? `; agentk_kubernetes_api_buffered_bytes ${fmt(agentkBuffered / Math.max(1, opened) / KiB)} KiB/stream` : ''})`);
  } finally {
    await path.stop();
  }
}

// ---- orchestration ---------------------------------------------------------------------------

function rotate<T>(list: readonly T[], by: number): T[] {
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

async function guarded(ctx: Context, what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    note(ctx, `${what} failed: ${(err as Error).message.split('\n')[0]}`);
  }
}

async function warmUp(ctx: Context): Promise<void> {
  console.log('warm-up (not recorded)');
  for (const [name, path] of ctx.paths) {
    await guarded(ctx, `warm-up ${name}`, async () => {
      await figureBulk(ctx, name, path, ctx.opts.warmBulkBytes, false);
      // Small requests too, also in a quick run: kas and agentk are not yet compiled for them
      // otherwise, and the first round's request figures came out at half their later value.
      await ctx.wrk.run(`${baseUrl(path)}/small`, 32, 1, ctx.headers);
      if (ctx.opts.quick) return;
      await ctx.wrk.run(`${baseUrl(path)}/small`, 1, 1, ctx.headers);
      await ctx.lg.job({ job: 'burst', url: `${baseUrl(path)}/small`, n: 200, warmRepeats: 1, headers: ctx.headers });
    });
  }
}

async function runRound(ctx: Context): Promise<void> {
  const { opts } = ctx;
  const names = rotate([...ctx.paths.keys()], ctx.round - 1);
  const each = async (figure: FigureGroup, only: readonly PathName[] | null, fn: (name: PathName, path: Path) => Promise<void>) => {
    if (!opts.only.has(figure)) return;
    const t0 = performance.now();
    for (const name of names) {
      if (only && !only.includes(name)) continue;
      await guarded(ctx, `${figure} ${name}`, () => fn(name, ctx.paths.get(name)!));
    }
    ctx.phaseSeconds[figure] = round((ctx.phaseSeconds[figure] ?? 0) + (performance.now() - t0) / 1000, 1);
  };
  await each('bulk', null, (n, p) => figureBulk(ctx, n, p, opts.bulkBytes));
  await each('rps-1', null, (n, p) => figureRps(ctx, n, p, 1));
  await each('rps-32', null, (n, p) => figureRps(ctx, n, p, 32));
  await each('hol', ['direct', 'ours-ws', 'ours-wss'], (n, p) => figureHol(ctx, n, p));
  if (!opts.quick || ctx.round === opts.rounds) await each('burst', null, (n, p) => figureBurst(ctx, n, p));
  await each('half-close', null, (n, p) => figureHalfClose(ctx, n, p));
  if (opts.stalledRounds.includes(ctx.round)) await each('stalled', opts.stalledPaths, (n) => figureStalled(ctx, n));
}

// ---- summary ---------------------------------------------------------------------------------

interface Target {
  figure: string;
  target: string;
  path: string;
  value: number | null;
  limit: number;
  /** '≥' or '≤' */
  op: '≥' | '≤';
  unit: string;
  pass: boolean | null;
  why?: string;
}

const UNITS: Record<string, string> = {
  bulk: 'MB/s',
  'rps-1': 'req/s',
  'rps-32': 'req/s',
  'p99-1': 'ms',
  'p99-32': 'ms',
  hol: 'ms (p99)',
  'hol-bulk': 'MB/s',
  burst: 'ms',
  'burst-cold': 'ms',
  'half-close': 'pass=1',
  stalled: 'KiB/stream',
  'stalled-kas': 'KiB/stream',
  'stalled-agentk': 'KiB/stream',
  'stalled-agentk-buffers': 'KiB/stream',
};

const ROW_ORDER = ['bulk', 'rps-1', 'rps-32', 'p99-1', 'p99-32', 'hol', 'hol-bulk', 'burst', 'burst-cold', 'half-close', 'stalled', 'stalled-kas', 'stalled-agentk', 'stalled-agentk-buffers'];

function summarize(raw: Raw): Record<string, Partial<Record<PathName, Spread | null>>> {
  const out: Record<string, Partial<Record<PathName, Spread | null>>> = {};
  for (const [fig, byPath] of Object.entries(raw)) {
    out[fig] = {};
    for (const [p, values] of Object.entries(byPath)) out[fig]![p as PathName] = spread(values ?? []);
  }
  return out;
}

/** Per-round ratios a ÷ b of one figure, as a spread (the rounds are interleaved, so drift cancels). */
function ratio(raw: Raw, fig: string, a: PathName, b: PathName): Spread | null {
  const va = raw[fig]?.[a];
  const vb = raw[fig]?.[b];
  if (!va || !vb) return null;
  return spread(va.map((x, i) => (x !== null && vb[i] !== null && vb[i] !== undefined && vb[i] !== 0 ? x / vb[i]! : null)));
}

function ratios(raw: Raw): Record<string, Record<string, Spread | null>> {
  const out: Record<string, Record<string, Spread | null>> = {};
  for (const fig of ['bulk', 'rps-1', 'rps-32', 'p99-1', 'burst']) {
    if (!raw[fig]) continue;
    const r: Record<string, Spread | null> = {};
    for (const p of ['ceiling', 'ours-ws', 'ours-wss', 'ssh'] as PathName[]) r[`${p}÷direct`] = ratio(raw, fig, p, 'direct');
    for (const p of OURS) {
      r[`${p}÷ceiling`] = ratio(raw, fig, p, 'ceiling');
      r[`${p}÷ssh`] = ratio(raw, fig, p, 'ssh');
    }
    out[fig] = r;
  }
  return out;
}

function targets(summary: ReturnType<typeof summarize>, rat: ReturnType<typeof ratios>, raw: Raw, scale: ScaleSummary | null): Target[] {
  const t: Target[] = [];
  const check = (figure: string, target: string, path: string, value: number | null | undefined, op: '≥' | '≤', limit: number, unit: string, why?: string) => {
    const v = value ?? null;
    t.push({ figure, target, path, value: v === null ? null : round(v, 3), limit, op, unit, pass: v === null ? null : op === '≥' ? v >= limit : v <= limit, why: v === null ? (why ?? 'not measured') : why });
  };
  const r = (fig: string, key: string) => rat[fig]?.[key]?.median;
  check('bulk', 'ws ≥ 0.8 × ceiling', 'ours-ws', r('bulk', 'ours-ws÷ceiling'), '≥', 0.8, '×');
  // The design's targets (performance.md): ws ≥ 1.0 × ssh -R, wss ≥ 0.8 × ssh -R, rps-1 ≥ 1.0 × ssh -R.
  check('bulk', 'ws ≥ 1.0 × ssh -R', 'ours-ws', r('bulk', 'ours-ws÷ssh'), '≥', 1.0, '×');
  check('bulk', 'wss ≥ 0.8 × ssh -R', 'ours-wss', r('bulk', 'ours-wss÷ssh'), '≥', 0.8, '×');
  for (const p of OURS) {
    check('rps-1', '≥ 0.6 × ceiling', p, r('rps-1', `${p}÷ceiling`), '≥', 0.6, '×');
    check('rps-1', '≥ 1.0 × ssh -R', p, r('rps-1', `${p}÷ssh`), '≥', 1.0, '×');
    check('rps-32', '≥ 0.6 × ceiling', p, r('rps-32', `${p}÷ceiling`), '≥', 0.6, '×');
    check('rps-32', '≥ 1.2 × ssh -R', p, r('rps-32', `${p}÷ssh`), '≥', 1.2, '×');
  }
  for (const p of OURS) check('p99-1', '≤ 1.5 ms (median over rounds)', p, summary['p99-1']?.[p]?.median, '≤', 1.5, 'ms');
  for (const p of OURS) {
    const hol = summary.hol?.[p]?.median;
    const p99 = summary['p99-1']?.[p]?.median;
    check('hol', '≤ 2 × p99-1', p, hol !== undefined && p99 ? hol / p99 : null, '≤', 2, '× p99-1');
  }
  const window = 256 + 64;
  for (const p of OURS) {
    for (const role of ['kas', 'agentk']) check('stalled', `≤ one window + one frame (${window} KiB) in ${role}`, p, summary[`stalled-${role}`]?.[p]?.median, '≤', window, 'KiB/stream');
    check('stalled', `≤ one window + one frame (${window} KiB) in agentk's buffers`, p, summary['stalled-agentk-buffers']?.[p]?.median, '≤', window, 'KiB/stream');
  }
  for (const p of OURS) check('burst', '1,000 concurrent streams ≤ 0.3 s', p, summary.burst?.[p]?.median, '≤', 300, 'ms');
  for (const p of OURS) {
    const values = raw['half-close']?.[p]?.filter((x): x is number => x !== null);
    check('half-close', 'passes (every round)', p, values && values.length ? Math.min(...values) : null, '≥', 1, 'pass');
  }
  const notRun = 'not run here: npm run bench:scale (or npm run bench -- --scale)';
  check('idle-agent', '≤ 10 KB per idle agent over ws (10,000 agents)', 'ours-ws', scale?.idleKiB.ws ?? null, '≤', 10_000 / 1024, 'KiB', scale ? scale.why : notRun);
  check('idle-agent', '≤ 40 KB per idle agent over wss (10,000 agents)', 'ours-wss', scale?.idleKiB.wss ?? null, '≤', 40_000 / 1024, 'KiB', scale ? scale.why : notRun);
  check('reconnect', '10,000 agents back ≤ 60 s after a kas restart', 'ours-ws', scale?.reconnectS.ws ?? null, '≤', 60, 's', scale ? scale.why : notRun);
  check('reconnect', '10,000 agents back ≤ 60 s after a kas restart', 'ours-wss', scale?.reconnectS.wss ?? null, '≤', 60, 's', scale ? scale.why : notRun);
  return t;
}

interface ScaleSummary {
  idleKiB: { ws: number | null; wss: number | null };
  reconnectS: { ws: number | null; wss: number | null };
  why?: string;
  file: string;
  json: unknown;
}

/**
 * Where the CPU goes, per path and process (median over rounds): µs of CPU per small request at 32
 * connections, and ms of CPU per 100 MB of bulk.
 */
function cpuCosts(ctx: Context): Record<string, Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, Record<string, number>>> = {};
  const collect = (fig: string, key: string, per: (d: Record<string, unknown>, v: number) => number) => {
    out[key] = {};
    for (const [path, list] of Object.entries(ctx.details[fig] ?? {})) {
      const byRole = new Map<string, number[]>();
      for (const d of (list ?? []) as (Record<string, unknown> | null)[]) {
        if (!d || !d.cpuMs) continue;
        for (const [role, ms] of Object.entries(d.cpuMs as Record<string, number>)) {
          const list2 = byRole.get(role) ?? [];
          list2.push(per(d, ms));
          byRole.set(role, list2);
        }
      }
      out[key]![path] = Object.fromEntries([...byRole.entries()].map(([r, v]) => [r, round(median(v), 1)]));
    }
  };
  collect('rps-32', 'cpuUsPerRequestAt32', (d, ms) => (ms * 1000) / Math.max(1, Number(d.requests)));
  collect('rps-1', 'cpuUsPerRequestAt1', (d, ms) => (ms * 1000) / Math.max(1, Number(d.requests)));
  collect('bulk', 'cpuMsPer100MB', (_d, ms) => (ms * 100 * 1e6) / ctx.opts.bulkBytes);
  return out;
}

function printTables(ctx: Context, summary: ReturnType<typeof summarize>, rat: ReturnType<typeof ratios>, tgs: Target[], longLink: LongLinkResult | null, cpu: ReturnType<typeof cpuCosts>): void {
  const names = [...ctx.paths.keys()];
  console.log('\n=== results: median [min–max] over rounds ===');
  const rows = [['figure', 'unit', ...names]];
  for (const fig of ROW_ORDER) {
    if (!summary[fig]) continue;
    rows.push([fig, UNITS[fig] ?? '', ...names.map((p) => fmtSpread(summary[fig]![p] ?? null))]);
  }
  console.log(table(rows));
  console.log('\n=== ratios (per round, then median [min–max]) ===');
  const keys = ['ceiling÷direct', 'ours-ws÷direct', 'ours-wss÷direct', 'ssh÷direct', 'ours-ws÷ceiling', 'ours-wss÷ceiling', 'ours-ws÷ssh', 'ours-wss÷ssh'];
  const rrows = [['figure', ...keys]];
  for (const [fig, r] of Object.entries(rat)) rrows.push([fig, ...keys.map((k) => fmtSpread(r[k] ?? null))]);
  console.log(table(rrows));
  console.log('\n=== CPU per unit of work, by process (median over rounds; "client" is wrk or curl) ===');
  const crow = [['path', 'µs/request at 32 conns', 'µs/request at 1 conn', 'ms per 100 MB of bulk']];
  const show = (m: Record<string, number> | undefined) => (m ? Object.entries(m).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') : '-');
  for (const p of names) crow.push([p, show(cpu.cpuUsPerRequestAt32?.[p]), show(cpu.cpuUsPerRequestAt1?.[p]), show(cpu.cpuMsPer100MB?.[p])]);
  console.log(table(crow));
  if (longLink) {
    console.log(`\n=== long link (${longLink.method}) ===`);
    if (longLink.skipped) console.log(`skipped: ${longLink.skipped}`);
    for (const v of longLink.variants) console.log(`${v.name.padEnd(34)} ${fmt(v.mbps)} MB/s overall, ${fmt(v.lastHalfMBps)} MB/s in the second half; per second: ${v.timeline.map((x) => fmt(x)).join(' ')}`);
    if (longLink.note) console.log(longLink.note);
  }
  console.log('\n=== targets (docs: /work/shared/design/performance.md) ===');
  const trows = [['figure', 'path', 'target', 'measured', 'mark']];
  for (const t of tgs) trows.push([t.figure, t.path, t.target, t.value === null ? '-' : `${fmt(t.value)} ${t.unit}`, t.pass === null ? `n/a (${t.why ?? ''})` : `${t.pass ? 'PASS' : 'FAIL'}${t.why && (t.figure === 'idle-agent' || t.figure === 'reconnect') ? ' *' : ''}`]);
  console.log(table(trows));
  const reused = tgs.find((t) => (t.figure === 'idle-agent' || t.figure === 'reconnect') && t.value !== null && t.why);
  if (reused) console.log(`* ${reused.why}`);
  if (ctx.notes.length) {
    console.log('\nnotes:');
    for (const n of ctx.notes) console.log(`  - ${n}`);
  }
}

function machineFacts(): Record<string, unknown> {
  const cpus = os.cpus();
  const require = createRequire(import.meta.url);
  let bufferutil = false;
  try {
    require('bufferutil');
    bufferutil = true;
  } catch {
    /* not installed */
  }
  const git = (args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
    } catch {
      return null;
    }
  };
  const dirty = git(['status', '--porcelain', '--', 'src']);
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    node: process.version,
    kernel: os.release(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    totalMemoryMiB: Math.round(os.totalmem() / MiB),
    bufferutil,
    gitCommit: git(['rev-parse', 'HEAD']),
    uncommittedSrcFiles: dirty === null ? null : dirty.split('\n').filter(Boolean).length,
  };
}

async function toolVersions(): Promise<Record<string, string>> {
  const v: Record<string, string> = {};
  const first = (s: string) => s.split('\n').find((l) => l.trim())?.trim() ?? '';
  v.wrk = first((await run('wrk', ['-v'])).stdout);
  v.curl = first((await run('curl', ['--version'])).stdout);
  v.ssh = first((await run('ssh', ['-V'])).stderr);
  return v;
}

async function runScale(ctx: Context): Promise<ScaleSummary | null> {
  const out = join(ctx.tmp, 'scale.json');
  console.log('\n=== scale test (bench/scale.ts) ===');
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [join(DIST, 'bench/scale.js'), '--json-out', out, ...(ctx.opts.quick ? ['--quick'] : [])], { stdio: 'inherit' });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  try {
    const json = JSON.parse(readFileSync(out, 'utf8')) as { file: string; summary: { idleKiBPerAgent: ScaleSummary['idleKiB']; reconnectSeconds: ScaleSummary['reconnectS']; note?: string } };
    return { idleKiB: json.summary.idleKiBPerAgent, reconnectS: json.summary.reconnectSeconds, why: json.summary.note, file: json.file, json };
  } catch (err) {
    note(ctx, `scale test produced no result (exit ${code}): ${(err as Error).message}`);
    return null;
  }
}

/**
 * Without --scale, the idle-agent and reconnect targets are taken from the newest committed full
 * scale result (bench/results/scale-*.json, written by npm run bench:scale), named as such.
 */
function latestScale(ctx: Context): ScaleSummary | null {
  const dir = join(ROOT, 'bench/results');
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => /^scale-.*Z\.json$/.test(f)).sort();
  } catch {
    return null;
  }
  const newest = files.at(-1);
  if (!newest) return null;
  try {
    const json = JSON.parse(readFileSync(join(dir, newest), 'utf8')) as { date: string; summary: { idleKiBPerAgent: ScaleSummary['idleKiB']; reconnectSeconds: ScaleSummary['reconnectS']; note?: string } };
    const why = `from ${newest} (npm run bench:scale of ${json.date}, not this run)`;
    ctx.notes.push(`the idle-agent and reconnect figures come ${why}`);
    return { idleKiB: json.summary.idleKiBPerAgent, reconnectS: json.summary.reconnectSeconds, why, file: join(dir, newest), json: { ...json, reusedFrom: newest } };
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  process.on('exit', killAllNow);
  for (const s of ['SIGINT', 'SIGTERM'] as const) {
    process.on(s, () => {
      killAllNow();
      process.exit(130);
    });
  }
  if (opts.profile) {
    await profileRun({ quick: opts.quick });
    return;
  }
  const missing: string[] = [];
  for (const tool of ['wrk', 'curl']) if (!(await have(tool))) missing.push(tool);
  if (missing.length) {
    console.error(`npm run bench needs ${missing.join(' and ')} (Debian: apt-get install -y ${missing.join(' ')} openssh-server openssh-client time)`);
    process.exitCode = 1;
    return;
  }
  const started = new Date();
  const machine = machineFacts();
  const loadStart = os.loadavg();
  console.log(`kas/agentk end-to-end benchmark${opts.quick ? ' (quick)' : ''}: ${opts.rounds} rounds, bulk ${opts.bulkBytes / MiB} MiB, rps ${opts.rpsSeconds} s, ${opts.burst} burst, ${opts.stalledStreams} stalled streams`);
  console.log(`machine: ${String(machine.cpus)} x ${String(machine.cpuModel)}, node ${process.version}, kernel ${os.release()}, load average ${loadStart.map((x) => x.toFixed(2)).join(' ')}`);
  if (!machine.bufferutil) console.log('  ! bufferutil is not installed: ws masks in JavaScript (slow)');

  const tmp = mkdtempSync(join(os.tmpdir(), 'kas-bench-'));
  const logDir = join(tmp, 'logs');
  mkdirSync(logDir);
  const ctx = { opts, tmp, logDir, notes: [], raw: {}, details: {}, round: 0, paths: new Map(), sshd: null, phaseSeconds: {} } as unknown as Context;
  let ok = false;
  try {
    ctx.secrets = await makeSecrets(join(tmp, 'secrets'));
    ctx.headers = authHeaders(ctx.secrets);
    const up = await startUpstream(logDir);
    ctx.upstream = { pid: up.proc.pid, address: up.address };
    ctx.wrk = new Wrk(tmp);
    ctx.lg = new LoadGen();
    ctx.paths.set('direct', directPath(up.address));
    ctx.paths.set('ceiling', await ceilingPath(logDir, up.address));
    ctx.paths.set('ours-ws', await oursPath(logDir, ctx.secrets, up.address, false));
    ctx.paths.set('ours-wss', await oursPath(logDir, ctx.secrets, up.address, true));
    if (opts.ssh) {
      try {
        ctx.sshd = await startSshd(logDir, join(tmp, 'ssh'));
        ctx.paths.set('ssh', await sshPath(logDir, ctx.sshd, up.address));
      } catch (err) {
        note(ctx, `the ssh -R peer cannot run here, carrying on without it: ${(err as Error).message}`);
      }
    }
    console.log(`paths: ${[...ctx.paths.entries()].map(([n, p]) => `${n} → ${p.entry.host}:${p.entry.port}`).join(', ')}`);

    const phase = async (name: string, fn: () => Promise<void>) => {
      const t0 = performance.now();
      await fn();
      ctx.phaseSeconds[name] = round((performance.now() - t0) / 1000, 1);
    };
    ctx.phaseSeconds.setup = round(performance.now() / 1000, 1);
    await phase('warm-up', () => warmUp(ctx));
    const loadByRound: number[] = [];
    for (ctx.round = 1; ctx.round <= opts.rounds; ctx.round++) {
      console.log(`round ${ctx.round}/${opts.rounds} (load average ${os.loadavg()[0]!.toFixed(2)})`);
      loadByRound.push(round(os.loadavg()[0]!, 2));
      await runRound(ctx);
    }
    ctx.round = opts.rounds;

    let longLink: LongLinkResult | null = null;
    if (opts.longLink) {
      console.log('long link');
      await phase('long-link', async () => {
        try {
          longLink = await longLinkTest({ logDir, secrets: ctx.secrets, tmp, seconds: opts.longLinkSeconds, headers: ctx.headers, lg: ctx.lg, control: !opts.quick });
        } catch (err) {
          note(ctx, `long-link test failed: ${(err as Error).message}`);
        }
      });
    }
    const loadBeforeScale = os.loadavg().map((x) => round(x, 2));
    const scale = opts.scale ? await runScale(ctx) : latestScale(ctx);

    const summary = summarize(ctx.raw);
    const rat = ratios(ctx.raw);
    const tgs = targets(summary, rat, ctx.raw, scale);
    const cpu = cpuCosts(ctx);
    printTables(ctx, summary, rat, tgs, longLink, cpu);

    const finished = new Date();
    const results = {
      benchmark: 'end-to-end',
      date: started.toISOString(),
      durationSeconds: Math.round((finished.getTime() - started.getTime()) / 1000),
      mode: opts.quick ? 'quick' : 'full',
      machine: {
        ...machine,
        loadAverageStart: loadStart.map((x) => round(x, 2)),
        loadAverageAtEachRound: loadByRound,
        loadAverageAfterRounds: loadBeforeScale,
        loadAverageEnd: os.loadavg().map((x) => round(x, 2)),
        tools: await toolVersions(),
      },
      config: {
        rounds: opts.rounds,
        bulkBytes: opts.bulkBytes,
        rpsSeconds: opts.rpsSeconds,
        holSeconds: opts.holSeconds,
        stalledStreams: opts.stalledStreams,
        stalledRounds: opts.stalledRounds,
        burst: opts.burst,
        burstWarmRepeats: opts.burstWarmRepeats,
        agentkConnections: 1,
        paths: Object.fromEntries([...ctx.paths.entries()].map(([n, p]) => [n, p.members().map((m) => m.role)])),
        units: UNITS,
      },
      summary,
      ratios: rat,
      targets: tgs,
      cpu,
      raw: ctx.raw,
      details: ctx.details,
      longLink,
      scale: scale ? { file: scale.file, summary: (scale.json as { summary: unknown }).summary } : null,
      notes: ctx.notes,
      phaseSeconds: ctx.phaseSeconds,
    };
    const dir = join(ROOT, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${started.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}${opts.quick ? '-quick' : ''}.json`);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`\nwrote ${file} (${Math.round(performance.now() / 1000)} s; by phase: ${Object.entries(ctx.phaseSeconds).map(([k, v]) => `${k} ${v}`).join(', ')})`);
    ok = true;
  } finally {
    ctx.lg?.stop();
    for (const p of ctx.paths.values()) await p.stop().catch(() => undefined);
    if (ctx.sshd) await stopProcess(ctx.sshd.proc);
    await stopAll();
    if (ok && !opts.keep) rmSync(tmp, { recursive: true, force: true });
    else console.log(`logs kept in ${logDir}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
