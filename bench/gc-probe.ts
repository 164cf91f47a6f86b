/**
 * Which requests make kas promote objects to V8's old generation. kas runs with --trace-gc-nvp
 * (plus `--kas-node-arg` options); wrk sends, in phases, nothing (idle), refused requests (401: the
 * HTTP server and auth only), proxied small GETs on one connection and on 32. For each phase it
 * prints the scavenges, the bytes they promoted and the promoted bytes per 1,000 requests. Objects
 * promoted and then freed by the next mark-compact make scavenges slow; a figure per 1,000 requests
 * that stays the same with a larger young generation (`--kas-node-arg --min-semi-space-size=64
 * --kas-node-arg --max-semi-space-size=64`) means the objects are held until a mark-compact, not
 * merely alive at a scavenge. It found two such holders, both fixed: a dead old object pointing at
 * young ones keeps them (and all they reach) through every scavenge. The stream table was a Map
 * (V8's ordered hash tables point to their replacement; src/protocol/id-map.ts), and kas gave the
 * router an object literal with a getter (V8 puts a literal's accessor pair in the old generation).
 * Proxied requests went from about 1,700 KiB promoted per 1,000 to about 8, and kas's scavenges
 * under load from 4–9 ms to about 1.
 *
 *   npm run build && node dist/bench/gc-probe.js [--seconds 5] [--kas-node-arg X ...] [--kas-dist DIR]
 *
 * Not a test: it prints numbers.
 */
import { readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { optionValues, runMain } from './lib/cli.js';
import { stopAll } from './lib/proc.js';
import { startAgentk, startBenchBase, startKas, waitForPath } from './lib/stack.js';
import { Wrk, type WrkResult } from './lib/tools.js';

interface Scavenges {
  count: number;
  promoted: number;
  pauseMs: number;
}

/** Totals of the scavenge lines (`gc=s`) of a --trace-gc-nvp log so far. */
function scavenges(logFile: string): Scavenges {
  const out: Scavenges = { count: 0, promoted: 0, pauseMs: 0 };
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes('gc=s ')) continue;
    out.count++;
    out.promoted += Number(/\bpromoted=(\d+)/.exec(line)?.[1] ?? 0);
    out.pauseMs += Number(/\bpause=([\d.]+)/.exec(line)?.[1] ?? 0);
  }
  return out;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const seconds = Number(optionValues(argv, '--seconds')[0] ?? 5);
  const kasDist = optionValues(argv, '--kas-dist')[0];
  const { tmp, logDir, secrets, headers, kubeconfig } = await startBenchBase('kas-gc-probe-');
  try {
    const kas = await startKas(logDir, { secrets, tls: false, name: 'kas', nodeArgs: ['--trace-gc-nvp', ...optionValues(argv, '--kas-node-arg')], ...(kasDist && { dist: resolve(kasDist) }) });
    await startAgentk(logDir, { secrets, tls: false, kasAgent: kas.agent, kubeconfig });
    await waitForPath(kas.proxy, headers, 30_000);
    const wrk = new Wrk(tmp);
    const url = `http://${kas.proxy.host}:${kas.proxy.port}/small`;
    const refused = { Authorization: 'Bearer pat:1:not-the-token' };
    await wrk.run(url, 1, 2, headers); // warm-up
    const phase = async (name: string, run: () => Promise<WrkResult | null>) => {
      const before = scavenges(kas.proc.logFile);
      const r = await run();
      const after = scavenges(kas.proc.logFile);
      const kib = (after.promoted - before.promoted) / 1024;
      const perK = r && r.requests > 0 ? `${((kib * 1000) / r.requests).toFixed(0)} KiB per 1,000 requests` : '';
      console.log(
        `${name.padEnd(22)} requests ${String(r?.requests ?? '-').padStart(7)}  scavenges ${String(after.count - before.count).padStart(4)}  ` +
          `promoted ${kib.toFixed(0).padStart(7)} KiB  scavenge pauses ${(after.pauseMs - before.pauseMs).toFixed(1).padStart(6)} ms  ${perK}`,
      );
    };
    await phase('idle', () => new Promise((r) => setTimeout(() => r(null), seconds * 1000)));
    await phase('refused (401), 1 conn', () => wrk.run(url, 1, seconds, refused));
    await phase('proxied, 1 conn', () => wrk.run(url, 1, seconds, headers));
    await phase('proxied, 32 conns', () => wrk.run(url, 32, seconds, headers));
  } finally {
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

runMain(main);
