/**
 * A/B comparison of two (or more) builds of kas and agentk on one machine, interleaved: each round
 * runs every variant one after the other (rotating the order), so the load other programs put on a
 * shared machine hits them alike. Prints, per variant, the median over rounds of the CPU each process
 * spent per small request (wrk -c 32 and -c 1) and per 100 MB of bulk, with the throughputs; the
 * ceiling (two plain relays) runs in the same rounds as the reference. Beside the CPU, the read and
 * write system calls per request (or per 100 MB) of each process, from /proc/PID/io.
 *
 *   node dist/bench/ab.js --variant base=.base/dist,.base/dist --variant new=dist,dist [--rounds 3]
 *       [--seconds 3] [--bulk-mib 256] [--tls] [--only rps-32,rps-1,bulk] [--pin | --pin-all] [--keep]
 *
 * --keep: the processes' logs stay in the printed directory. --node-arg X (repeatable): a node option
 * for kas and agentk, e.g. --node-arg --trace-gc. --variant-node-arg NAME=X (repeatable): a node
 * option for variant NAME's two processes only (e.g. one build with two V8 settings). Every process
 * gets the programs' Node options first (src/shared/node-flags.ts); a later option overrides, so
 * `--variant-node-arg off=--min-semi-space-size=0` runs variant off without that one.
 *
 * --pin: each path's two processes get a core each (kas and relay1 on CPU 0, agentk and relay2 on
 * CPU 1; `taskset`), so they never share one; the client and the upstream float. On 2 cores the
 * unpinned figures are bimodal (kas and agentk on one core half the time): report both.
 * --pin-all: as --pin, and the client (curl, wrk) on CPU 0 and the upstream on CPU 1 too, so every
 * round shares the cores the same way. (agentk's CPU per byte in bulk, about 130 or about 270 ms
 * per 100 MB from one round to the next, was first put down to placement; most of it was V8's full
 * collections, ended by --initial-old-space-size=128: docs/configuration.md.) Runs still differ from each other (the
 * machine's two CPUs are shared with its host), so compare variants within one run only.
 *
 * A variant is NAME=KAS_DIST,AGENTK_DIST (compiled trees; a kas of one build with an agentk of
 * another measures mixed versions too). Copy a build aside with `cp -r dist .base/dist` before
 * changing the code; the copy must stay inside the repository so it finds node_modules.
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import os from 'node:os';
import { resolve } from 'node:path';
import { optionValues, runMain } from './lib/cli.js';
import { cpuMs, ioCalls, stopAll } from './lib/proc.js';
import { median } from './lib/stats.js';
import { baseUrl, ceilingPath, startAgentk, startBenchBase, startKas, waitForPath, type Member, type Path } from './lib/stack.js';
import { Wrk, curlBulk } from './lib/tools.js';

interface Variant {
  name: string;
  kasDist: string;
  agentkDist: string;
  nodeArgs: string[];
}

interface Usage {
  ms: number;
  reads: number;
  writes: number;
}

/** Binds every thread of each member to its own core, in order (taskset). */
function pin(list: Member[]): void {
  list.forEach(({ pid }, i) => execFileSync('taskset', ['-a', '-p', '-c', String(i % os.cpus().length), String(pid)], { stdio: 'ignore' }));
}

function snapshot(list: Member[]): Map<string, Usage> {
  const m = new Map<string, Usage>();
  for (const { role, pid } of list) m.set(role, { ms: cpuMs(pid), ...ioCalls(pid) });
  return m;
}

function delta(before: Map<string, Usage>, list: Member[]): Record<string, Usage> {
  const after = snapshot(list);
  const out: Record<string, Usage> = {};
  for (const [role, u] of after) {
    const b = before.get(role) ?? { ms: 0, reads: 0, writes: 0 };
    out[role] = { ms: u.ms - b.ms, reads: u.reads - b.reads, writes: u.writes - b.writes };
  }
  return out;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const variants: Variant[] = optionValues(argv, '--variant').map((v) => {
    const [name, dists] = v.split('=');
    const [k, a] = (dists ?? '').split(',');
    if (!name || !k || !a) throw new Error(`--variant NAME=KAS_DIST,AGENTK_DIST, got ${v}`);
    return { name, kasDist: resolve(k), agentkDist: resolve(a), nodeArgs: [] };
  });
  for (const v of optionValues(argv, '--variant-node-arg')) {
    const eq = v.indexOf('=');
    const variant = variants.find((x) => x.name === v.slice(0, eq));
    if (eq < 0 || !variant) throw new Error(`--variant-node-arg NAME=ARG names a --variant, got ${v}`);
    variant.nodeArgs.push(v.slice(eq + 1));
  }
  if (variants.length === 0) throw new Error('give at least one --variant NAME=KAS_DIST,AGENTK_DIST');
  const rounds = Number(optionValues(argv, '--rounds')[0] ?? 3);
  const seconds = Number(optionValues(argv, '--seconds')[0] ?? 3);
  const bulkBytes = Number(optionValues(argv, '--bulk-mib')[0] ?? 256) * 1024 * 1024;
  const tls = argv.includes('--tls');
  const pinAll = argv.includes('--pin-all');
  const pinned = pinAll || argv.includes('--pin');
  const keep = argv.includes('--keep');
  const nodeArgs = optionValues(argv, '--node-arg');
  const only = new Set((optionValues(argv, '--only')[0] ?? 'rps-32,rps-1,bulk').split(','));
  const { tmp, logDir, secrets, headers, upstream, kubeconfig } = await startBenchBase('kas-ab-');
  try {
    const wrk = new Wrk(tmp);
    const paths = new Map<string, Path>();
    paths.set('ceiling', await ceilingPath(logDir, upstream.address));
    for (const v of variants) {
      const kas = await startKas(logDir, { secrets, tls, name: `kas-${v.name}`, dist: v.kasDist, nodeArgs: [...nodeArgs, ...v.nodeArgs] });
      const agentk = await startAgentk(logDir, { secrets, tls, kasAgent: kas.agent, kubeconfig, dist: v.agentkDist, nodeArgs: [...nodeArgs, ...v.nodeArgs] });
      const path: Path = {
        name: v.name,
        entry: kas.proxy,
        members: () => [
          { role: 'kas', pid: kas.proc.pid },
          { role: 'agentk', pid: agentk.proc.pid },
        ],
        stop: async () => undefined,
      };
      await waitForPath(kas.proxy, headers, 30_000);
      paths.set(v.name, path);
    }
    const names = [...paths.keys()];
    if (pinned) for (const p of paths.values()) pin(p.members());
    if (pinAll) {
      // The client (curl and wrk inherit this process's CPU) beside kas and relay1, the upstream
      // beside agentk and relay2: every path's processes share the cores the same way in every round.
      pin([{ role: 'client', pid: process.pid }, { role: 'upstream', pid: upstream.proc.pid }]);
    }
    // figure -> path -> role -> per-round values
    const cpu: Record<string, Record<string, Record<string, number[]>>> = {};
    const speed: Record<string, Record<string, number[]>> = {};
    const p99: Record<string, number[]> = {};
    const add = (fig: string, path: string, role: string, v: number) => (((cpu[fig] ??= {})[path] ??= {})[role] ??= []).push(v);
    // Warm-up, not recorded.
    for (const name of names) {
      const p = paths.get(name)!;
      await wrk.run(`${baseUrl(p)}/small`, 32, 1, headers);
      await curlBulk(`${baseUrl(p)}/big?bytes=${64 * 1024 * 1024}`, 64 * 1024 * 1024, headers, 120_000);
    }
    for (let round = 0; round < rounds; round++) {
      const order = names.map((_, i) => names[(i + round) % names.length]!);
      console.log(`round ${round + 1}/${rounds} (load average ${os.loadavg()[0]!.toFixed(2)}): ${order.join(', ')}`);
      for (const name of order) {
        const p = paths.get(name)!;
        const list = p.members();
        for (const c of [32, 1]) {
          const fig = `rps-${c}`;
          if (!only.has(fig)) continue;
          const before = snapshot(list);
          const r = await wrk.run(`${baseUrl(p)}/small`, c, seconds, headers);
          if (r.errors > 0) console.log(`  ! ${name} ${fig}: ${r.errors} errors`);
          const n = Math.max(1, r.requests);
          for (const [role, u] of Object.entries(delta(before, list))) {
            add(fig, name, role, (u.ms * 1000) / n);
            add(`${fig} reads`, name, role, u.reads / n);
            add(`${fig} writes`, name, role, u.writes / n);
          }
          ((speed[fig] ??= {})[name] ??= []).push(r.rps);
          if (c === 1) (p99[name] ??= []).push(r.p99Us / 1000);
        }
        if (only.has('bulk')) {
          const before = snapshot(list);
          const r = await curlBulk(`${baseUrl(p)}/big?bytes=${bulkBytes}`, bulkBytes, headers, 300_000);
          for (const [role, u] of Object.entries(delta(before, list))) {
            const per100MB = (100 * 1e6) / bulkBytes;
            add('bulk', name, role, u.ms * per100MB);
            add('bulk reads', name, role, u.reads * per100MB);
            add('bulk writes', name, role, u.writes * per100MB);
          }
          ((speed.bulk ??= {})[name] ??= []).push(r.mbps);
        }
      }
    }
    const f = (x: number) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : '-');
    console.log(`\n=== medians over ${rounds} rounds (${tls ? 'wss' : 'ws'}${pinned ? ', pinned' : ''}); CPU: µs per request (rps) or ms per 100 MB (bulk) ===`);
    for (const fig of ['rps-32', 'rps-1', 'bulk']) {
      if (!only.has(fig)) continue;
      console.log(`${fig}:`);
      for (const name of names) {
        const roles = cpu[fig]?.[name] ?? {};
        const parts = Object.entries(roles).map(([role, xs]) => `${role} ${f(median(xs))} [${f(Math.min(...xs))}–${f(Math.max(...xs))}]`);
        const sp = speed[fig]?.[name] ?? [];
        const lat = fig === 'rps-1' ? `, p99 ${f(median(p99[name] ?? []))} ms` : '';
        console.log(`  ${name.padEnd(10)} ${f(median(sp)).padStart(6)} ${fig === 'bulk' ? 'MB/s' : 'req/s'}${lat}; CPU ${parts.join(', ')}`);
        const calls = Object.keys(roles).map((role) => `${role} ${f(median(cpu[`${fig} reads`]?.[name]?.[role] ?? []))}/${f(median(cpu[`${fig} writes`]?.[name]?.[role] ?? []))}`);
        console.log(`  ${''.padEnd(17)} system calls read/write per ${fig === 'bulk' ? '100 MB' : 'request'}: ${calls.join(', ')}`);
      }
    }
  } finally {
    await stopAll();
    if (keep) console.log(`logs kept in ${logDir}`);
    else rmSync(tmp, { recursive: true, force: true });
  }
}

runMain(main);
