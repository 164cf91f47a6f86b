/**
 * `npm run bench -- --profile`: CPU profiles of kas and agentk (node --cpu-prof) under the
 * benchmark's loads, one fresh kas + agentk pair per load (bulk, rps-32, rps-1) over ws://, and a
 * summary of where their CPU time goes: top functions by self time, by inclusive time, and by
 * module (our files, ws, node internals, garbage collection). Written to
 * bench/results/profile-<date>.json; the raw .cpuprofile files stay in the temporary folder
 * printed at the end (open them in Chrome DevTools).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { stopAll, stopProcess } from './proc.js';
import { authHeaders, baseUrl, makeSecrets, oursPath, ROOT, startUpstream } from './stack.js';
import { fmt, table } from './stats.js';
import { curlBulk, Wrk } from './tools.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  busyMs: number;
  topSelf: { fn: string; pct: number }[];
  topTotal: { fn: string; pct: number }[];
  byModule: { module: string; pct: number }[];
  /**
   * Who spends it: `ours` (src/), `libraries` (node_modules: msgpackr, ws, undici, prom-client...),
   * `node` (Node's own JavaScript: node:http, streams, net, events, timers), `native` (C++ behind a
   * JavaScript call: writev, read, the system calls and the kernel's work in them), `gc`, and
   * `program` (V8 and libuv outside JavaScript: the event loop, compilation, IC misses).
   */
  byOwner: { owner: string; pct: number }[];
}

function ownerOf(mod: string): string {
  if (mod.startsWith('src/')) return 'ours';
  if (mod.startsWith('node:')) return 'node';
  if (mod === '(garbage collector)') return 'gc';
  if (mod === '(native)') return 'native';
  if (mod === '(program)') return 'program';
  return 'libraries';
}

function moduleOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const own = /dist\/(src\/.*)$/.exec(url);
  if (own) return own[1]!;
  return url.split('/').slice(-2).join('/');
}

function owners(modules: ReadonlyMap<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [mod, t] of modules) out.set(ownerOf(mod), (out.get(ownerOf(mod)) ?? 0) + t);
  return out;
}

function label(cf: CallFrame): string {
  const file = cf.url ? cf.url.replace(/^.*\/(node_modules\/|dist\/)/, '').replace(/^file:\/\//, '') : '';
  return `${cf.functionName || '(anonymous)'}${file ? ` ${file}:${cf.lineNumber + 1}` : ''}`;
}

/**
 * Self and inclusive time per function and module, in percent of the busy (non-idle) time.
 * `lastMs`: only the samples of the profile's last `lastMs` ms (the load, not the start-up).
 */
export function summarizeProfile(file: string, lastMs = Infinity, top = 20): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const from = p.endTime - lastMs * 1000;
  let t = p.startTime;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const modules = new Map<string, number>();
  let busy = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]!);
    t += p.timeDeltas[i] ?? 0;
    const dt = p.timeDeltas[i + 1] ?? 0;
    if (t < from || !node || node.callFrame.functionName === '(idle)') continue;
    busy += dt;
    const key = label(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + dt);
    const mod = moduleOf(node.callFrame.url, node.callFrame.functionName);
    modules.set(mod, (modules.get(mod) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const k = label(byId.get(id)!.callFrame);
      if (k === '(root)' || seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
  }
  const pct = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => ({ k, pct: Math.round((v / Math.max(1, busy)) * 1000) / 10 }));
  return {
    file,
    busyMs: Math.round(busy / 1000),
    topSelf: pct(self).map(({ k, pct: x }) => ({ fn: k, pct: x })),
    topTotal: pct(total).map(({ k, pct: x }) => ({ fn: k, pct: x })),
    byModule: pct(modules).map(({ k, pct: x }) => ({ module: k, pct: x })),
    byOwner: pct(owners(modules)).map(({ k, pct: x }) => ({ owner: k, pct: x })),
  };
}

function profilesIn(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

export async function profileRun(options: { quick: boolean }): Promise<void> {
  const tmp = mkdtempSync(join(os.tmpdir(), 'kas-profile-'));
  const logDir = join(tmp, 'logs');
  mkdirSync(logDir);
  const secrets = await makeSecrets(join(tmp, 'secrets'));
  const headers = authHeaders(secrets);
  const wrk = new Wrk(tmp);
  const seconds = options.quick ? 3 : 8;
  const bulkBytes = (options.quick ? 512 : 2048) * 1024 * 1024;
  const out: Record<string, { load: unknown; kas: ProfileSummary | null; agentk: ProfileSummary | null }> = {};
  try {
    const up = await startUpstream(logDir);
    for (const load of ['bulk', 'rps-32', 'rps-1'] as const) {
      const dir = join(tmp, load);
      const path = await oursPath(logDir, secrets, up.address, false, {
        kasNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'kas')}`],
        agentNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'agentk')}`],
      });
      await wrk.run(`${baseUrl(path)}/small`, 8, 1, headers);
      await curlBulk(`${baseUrl(path)}/big?bytes=${64 * 1024 * 1024}`, 64 * 1024 * 1024, headers, 60_000);
      const loadStart = performance.now();
      let result: unknown;
      if (load === 'bulk') {
        const r = await curlBulk(`${baseUrl(path)}/big?bytes=${bulkBytes}`, bulkBytes, headers, 300_000);
        result = { mbps: Math.round(r.mbps) };
      } else {
        const r = await wrk.run(`${baseUrl(path)}/small`, load === 'rps-32' ? 32 : 1, seconds, headers);
        result = { rps: Math.round(r.rps), p99Ms: r.p99Us / 1000, errors: r.errors };
      }
      // SIGTERM: both drain and exit normally, which writes the profiles.
      await stopProcess(path.agentk, 'SIGTERM', 15_000);
      await stopProcess(path.kas.proc, 'SIGTERM', 15_000);
      // Only the samples since the load started (the start-up and warm-up are left out).
      const lastMs = performance.now() - loadStart;
      out[load] = { load: result, kas: null, agentk: null };
      for (const who of ['kas', 'agentk'] as const) {
        const files = profilesIn(join(dir, who));
        out[load]![who] = files.length ? summarizeProfile(files[0]!, lastMs) : null;
      }
      console.log(`\n=== profile under ${load} (${JSON.stringify(result)}) ===`);
      for (const who of ['kas', 'agentk'] as const) {
        const s = out[load]![who];
        if (!s) {
          console.log(`${who}: no profile written`);
          continue;
        }
        console.log(`\n${who}: busy ${fmt(s.busyMs)} ms; by owner: ${s.byOwner.map((m) => `${m.owner} ${m.pct}%`).join(', ')}`);
        console.log(`by module: ${s.byModule.slice(0, 8).map((m) => `${m.module} ${m.pct}%`).join(', ')}`);
        const rows = [['self %', 'function'], ...s.topSelf.slice(0, 15).map((f) => [String(f.pct), f.fn])];
        console.log(table(rows));
        const trows = [['total %', 'function (inclusive)'], ...s.topTotal.slice(0, 15).map((f) => [String(f.pct), f.fn])];
        console.log(table(trows));
      }
    }
    const date = new Date();
    const resultsDir = join(ROOT, 'bench/results');
    mkdirSync(resultsDir, { recursive: true });
    const file = join(resultsDir, `profile-${date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify({ benchmark: 'profile', date: date.toISOString(), node: process.version, cpus: os.cpus().length, profiles: out }, null, 2)}\n`);
    console.log(`\nwrote ${file}\nraw profiles in ${tmp}`);
  } finally {
    await stopAll();
  }
}
