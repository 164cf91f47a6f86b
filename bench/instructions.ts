/**
 * User-space instructions per small request of kas, agentk and one plain relay, counted by
 * valgrind's callgrind: the same count for the same build whatever else the machine is doing, so a
 * change of a few per cent shows, where CPU time (bench/ab.ts) needs many rounds and still
 * overlaps. System calls and the kernel's work are not counted (a relay spends most of its time
 * there); cache misses are not either, so a change that only moves memory (a GC fix) can save more
 * time than instructions.
 *
 * Each program runs under callgrind with instrumentation off (valgrind's plain JIT, a few times
 * slower than native) while `--warm` requests get V8's optimizing compiler to finish, then on for
 * `--requests` requests (`--concurrency` at a time, from this process), then a dump. `--top N`
 * prints the N JavaScript functions (and builtins) with the most instructions of their own, named
 * from the map `--perf-basic-prof` writes.
 *
 *   npm run build && node dist/bench/instructions.js [--requests 3000] [--warm 30000]
 *       [--concurrency 32] [--top 25] [--kas-dist DIR] [--agentk-dist DIR]
 *
 * Needs valgrind (Debian: apt-get install valgrind). Takes 1-2 minutes. Not a test: it prints numbers.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join, resolve } from 'node:path';
import { NODE_FLAGS } from '../src/shared/node-flags.js';
import { optionValues, runMain } from './lib/cli.js';
import { sleep, startProcess, stopAll, waitForListeners, type Proc } from './lib/proc.js';
import { DIST, kasConfigText, parseHostPort, startBenchBase, waitForPath, type HostPort } from './lib/stack.js';

interface Counted {
  name: string;
  proc: Proc;
}

/** `[start, size, name]` of every JIT-compiled function in a `--perf-basic-prof` map, by start. */
function perfMap(pid: number): Array<[number, number, string]> {
  const file = `/tmp/perf-${pid}.map`;
  if (!existsSync(file)) return [];
  const out: Array<[number, number, string]> = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
    if (m) out.push([parseInt(m[1]!, 16), parseInt(m[2]!, 16), m[3]!]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

function nameAt(map: ReadonlyArray<[number, number, string]>, addr: number): string | null {
  let lo = 0;
  let hi = map.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [start, size, name] = map[mid]!;
    if (addr < start) hi = mid - 1;
    else if (addr >= start + size) lo = mid + 1;
    else return name;
  }
  return null;
}

/** Total instructions and the functions with the most of their own, from a callgrind output file. */
function readCallgrind(file: string, map: ReadonlyArray<[number, number, string]>): { total: number; self: Map<string, number> } {
  const names = new Map<string, string>();
  const self = new Map<string, number>();
  let total = 0;
  let fn = '';
  let skipNext = false;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const summary = /^(?:summary|totals): (\d+)/.exec(line);
    if (summary) {
      total = Math.max(total, Number(summary[1]));
      continue;
    }
    if (line.startsWith('fn=')) {
      // "(id) name" defines an id; "(id)" refers to one.
      const m = /^fn=\((\d+)\)(?: (.*))?$/.exec(line);
      if (m) {
        if (m[2] !== undefined) names.set(m[1]!, m[2]);
        fn = names.get(m[1]!) ?? m[1]!;
      } else fn = line.slice(3);
      continue;
    }
    if (line.startsWith('cfn=') || line.startsWith('cfi=') || line.startsWith('cob=')) {
      const m = /^cfn=\((\d+)\) (.*)$/.exec(line);
      if (m) names.set(m[1]!, m[2]!);
      continue;
    }
    // The cost line after "calls=" is the callee's inclusive cost, not this function's own.
    if (line.startsWith('calls=')) {
      skipNext = true;
      continue;
    }
    if (/^[0-9+\-*]/.test(line)) {
      if (skipNext) {
        skipNext = false;
        continue;
      }
      const cost = Number(line.split(' ')[1]);
      if (!Number.isFinite(cost)) continue;
      const jit = /^0x([0-9a-f]+)/.exec(fn);
      const key = jit ? (nameAt(map, parseInt(jit[1]!, 16)) ?? 'JIT code (unnamed)') : fn.replace(/^\?\?\?:/, '').replace(/ \[.*\]$/, '');
      self.set(key, (self.get(key) ?? 0) + cost);
    }
  }
  return { total, self };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const requests = Number(optionValues(argv, '--requests')[0] ?? 3000);
  const warm = Number(optionValues(argv, '--warm')[0] ?? 30_000);
  const concurrency = Number(optionValues(argv, '--concurrency')[0] ?? 32);
  const top = Number(optionValues(argv, '--top')[0] ?? 0);
  const kasDist = resolve(optionValues(argv, '--kas-dist')[0] ?? DIST);
  const agentkDist = resolve(optionValues(argv, '--agentk-dist')[0] ?? DIST);
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('valgrind is not installed (Debian: apt-get install valgrind)');
  }
  const base = await startBenchBase('kas-instructions-');
  const callgrind = (name: string) => ['--tool=callgrind', `--callgrind-out-file=${join(base.tmp, `cg-${name}.%p`)}`, '--instr-atstart=no'];
  const nodeArgs = [...NODE_FLAGS, ...(top > 0 ? ['--perf-basic-prof'] : [])];
  try {
    const configFile = join(base.tmp, 'kas.yaml');
    writeFileSync(configFile, kasConfigText({ secrets: base.secrets, tls: false }));
    const kas = startProcess('kas', 'valgrind', [...callgrind('kas'), process.execPath, ...nodeArgs, join(kasDist, 'src/broker/main.js'), '--config', configFile], { logDir: base.logDir });
    const listeners = await waitForListeners(kas, ['agent', 'kubernetes_api'], 300_000);
    const agentArgs = ['--kas-address', `ws://${listeners.agent!}/`, '--token-file', base.secrets.agentTokenFile, '--kubeconfig', base.kubeconfig, '--observability-listen-address', '127.0.0.1:0'];
    const agentk = startProcess('agentk', 'valgrind', [...callgrind('agentk'), process.execPath, ...nodeArgs, join(agentkDist, 'src/agent/main.js'), ...agentArgs], { logDir: base.logDir });
    const proxy = parseHostPort(listeners.kubernetes_api!);
    await waitForPath(proxy, base.headers, 300_000);
    const target = `${base.upstream.address.host}:${base.upstream.address.port}`;
    const relayProc = startProcess('relay', 'valgrind', [...callgrind('relay'), process.execPath, join(DIST, 'bench/relay.js'), '--name', 'relay', '--listen', '127.0.0.1:0', '--target', target], { logDir: base.logDir });
    const relay = parseHostPort((await waitForListeners(relayProc, ['relay'], 300_000)).relay!);

    const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
    const one = (to: HostPort, headers: Record<string, string>) =>
      new Promise<void>((done, fail) => {
        http
          .get({ host: to.host, port: to.port, path: '/small', headers, agent }, (res) => {
            res.resume();
            res.on('end', () => (res.statusCode === 200 ? done() : fail(new Error(`HTTP ${res.statusCode}`))));
          })
          .on('error', fail);
      });
    const load = async (to: HostPort, headers: Record<string, string>, n: number) => {
      let left = n;
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (left-- > 0) await one(to, headers);
      }));
    };
    const control = (p: Proc, ...args: string[]) => execFileSync('callgrind_control', [...args, String(p.pid)], { stdio: 'ignore' });
    const measure = async (to: HostPort, headers: Record<string, string>, members: Counted[]) => {
      console.log(`warming up with ${warm} requests, then counting ${requests} (${concurrency} at a time)...`);
      await load(to, headers, warm);
      for (const m of members) control(m.proc, '--instr=on');
      await load(to, headers, requests);
      for (const m of members) {
        control(m.proc, '--dump');
        control(m.proc, '--instr=off');
      }
      await sleep(500);
    };
    await measure(proxy, base.headers, [
      { name: 'kas', proc: kas },
      { name: 'agentk', proc: agentk },
    ]);
    await measure(relay, {}, [{ name: 'relay', proc: relayProc }]);
    agent.destroy();

    console.log(`\ninstructions per request (user space, callgrind), ${requests} requests at ${concurrency} connections:`);
    for (const [name, proc] of [['kas', kas], ['agentk', agentk], ['relay', relayProc]] as const) {
      const dumps = readdirSync(base.tmp).filter((f) => f.startsWith(`cg-${name}.${proc.pid}.`));
      const map = top > 0 ? perfMap(proc.pid) : [];
      let total = 0;
      const self = new Map<string, number>();
      for (const f of dumps) {
        const r = readCallgrind(join(base.tmp, f), map);
        total += r.total;
        for (const [k, v] of r.self) self.set(k, (self.get(k) ?? 0) + v);
      }
      console.log(`  ${name.padEnd(7)} ${Math.round(total / requests).toLocaleString('en-US')}`);
      if (top > 0 && name !== 'relay') {
        for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`      ${Math.round(v / requests).toString().padStart(7)}  ${k.slice(0, 140)}`);
      }
      if (map.length > 0) rmSync(`/tmp/perf-${proc.pid}.map`, { force: true });
    }
  } finally {
    await stopAll();
    rmSync(base.tmp, { recursive: true, force: true });
  }
}

runMain(main);
