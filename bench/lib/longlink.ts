/**
 * The long-link test: one bulk stream through kas → agentk with 50 ms of delay each way between
 * them (100 ms round trip), to show whether the tunnel's flow-control windows grow with the round
 * trip. A fixed 256 KiB window caps one stream at 256 KiB / 100 ms ≈ 2.6 MB/s.
 *
 * Preferred: a network namespace holding agentk and the upstream, joined to the host by a veth
 * pair with `tc netem delay 50ms` on both ends (made and removed here). When netem or namespaces
 * are not permitted, the reason is printed and a user-space delay relay (bench/relay.ts
 * --delay-ms 50) between agentk and kas stands in for the link.
 *
 * Two variants each time: kas's default windows (256 KiB growing to 16 MiB) and, as a control, a
 * kas whose max_window equals its initial window (256 KiB fixed).
 */
import { performance } from 'node:perf_hooks';
import { run, stopProcess, type Proc } from './proc.js';
import { authHeaders, startAgentk, startKas, startRelay, startUpstream, waitForPath, writeKubeconfig, type HostPort, type Secrets } from './stack.js';
import type { LoadGen } from './tools.js';

export interface LongLinkVariant {
  name: string;
  mbps: number;
  lastHalfMBps: number;
  /** MB/s in each second of the transfer. */
  timeline: number[];
  bytes: number;
  seconds: number;
}

export interface LongLinkResult {
  method: string;
  rttMs: number;
  skipped?: string;
  fallbackReason?: string;
  fixedWindowCapMBps: number;
  variants: LongLinkVariant[];
  windowsGrow: boolean | null;
  note?: string;
}

const DELAY_MS = 50;
const WINDOW = 256 * 1024;

interface Netns {
  name: string;
  hostIp: string;
  nsIp: string;
  cleanup(): Promise<void>;
}

async function sh(args: string[]): Promise<void> {
  const r = await run(args[0]!, args.slice(1), { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${(r.stderr || r.stdout).trim() || `exit ${r.code}`}`);
}

/** A namespace joined by a veth pair with netem delay on both ends; throws (after cleaning up) when not permitted. */
async function makeNetns(): Promise<Netns> {
  const id = process.pid % 100_000;
  const name = `kasbench${id}`;
  const host = `kb${id}h`;
  const peer = `kb${id}n`;
  const octet = 1 + (id % 250);
  const hostIp = `10.251.${octet}.1`;
  const nsIp = `10.251.${octet}.2`;
  const cleanup = async () => {
    await run('ip', ['link', 'del', host]);
    await run('ip', ['netns', 'del', name]);
  };
  try {
    await sh(['ip', 'netns', 'add', name]);
    await sh(['ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', peer]);
    await sh(['ip', 'link', 'set', peer, 'netns', name]);
    await sh(['ip', 'addr', 'add', `${hostIp}/30`, 'dev', host]);
    await sh(['ip', 'link', 'set', host, 'up']);
    await sh(['ip', '-n', name, 'addr', 'add', `${nsIp}/30`, 'dev', peer]);
    await sh(['ip', '-n', name, 'link', 'set', peer, 'up']);
    await sh(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
    await sh(['tc', 'qdisc', 'add', 'dev', host, 'root', 'netem', 'delay', `${DELAY_MS}ms`]);
    await sh(['ip', 'netns', 'exec', name, 'tc', 'qdisc', 'add', 'dev', peer, 'root', 'netem', 'delay', `${DELAY_MS}ms`]);
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { name, hostIp, nsIp, cleanup };
}

async function timedBulk(lg: LoadGen, url: string, headers: Record<string, string>, seconds: number): Promise<{ bytes: number; seconds: number; buckets: number[] }> {
  return lg.job({ job: 'timed', url, headers, seconds });
}

export interface LongLinkOptions {
  logDir: string;
  secrets: Secrets;
  tmp: string;
  seconds: number;
  headers: Record<string, string>;
  lg: LoadGen;
  /** Also measure the fixed-window control (default true). */
  control?: boolean;
}

export async function longLinkTest(o: LongLinkOptions): Promise<LongLinkResult> {
  const capMBps = WINDOW / ((2 * DELAY_MS) / 1000) / 1e6;
  let netns: Netns | null = null;
  let fallbackReason: string | undefined;
  if (process.platform !== 'linux') fallbackReason = 'not Linux';
  else {
    try {
      netns = await makeNetns();
    } catch (err) {
      fallbackReason = `tc netem in a network namespace is not permitted here (${(err as Error).message.split('\n')[0]})`;
      console.log(`  netem not available: ${fallbackReason}; using a user-space delay relay (${DELAY_MS} ms each way) between agentk and kas instead`);
    }
  }
  const method = netns ? `network namespace + tc netem delay ${DELAY_MS}ms each way (agentk and upstream in the namespace)` : `user-space delay relay, ${DELAY_MS} ms each way between agentk and kas (bench/relay.ts --delay-ms)`;
  const variants: LongLinkVariant[] = [];
  const procs: Proc[] = [];
  try {
    const upstream = await startUpstream(o.logDir, netns ? { netns: netns.name } : {});
    procs.push(upstream.proc);
    const kubeconfig = writeKubeconfig(o.secrets.dir, upstream.address);
    const setups: { name: string; tunnel?: Record<string, unknown> }[] = [
      { name: 'default windows (256 KiB → 16 MiB)' },
      { name: 'fixed 256 KiB window (control)', tunnel: { initial_window: WINDOW, max_window: WINDOW } },
    ].slice(0, o.control === false ? 1 : 2);
    for (const setup of setups) {
      const kas = await startKas(o.logDir, { secrets: o.secrets, tls: false, tunnel: setup.tunnel, agentListen: netns ? `${netns.hostIp}:0` : '127.0.0.1:0', name: 'kas-longlink' });
      procs.push(kas.proc);
      let kasAgent: HostPort = kas.agent;
      if (!netns) {
        const relay = await startRelay(o.logDir, 'delay-relay', kas.agent, DELAY_MS);
        procs.push(relay.proc);
        kasAgent = relay.address;
      }
      const agentk = await startAgentk(o.logDir, { secrets: o.secrets, tls: false, kasAgent, kubeconfig, netns: netns?.name });
      procs.push(agentk.proc);
      await waitForPath(kas.proxy, authHeaders(o.secrets), 30_000, () => kas.proc.alive() && agentk.proc.alive());
      const t0 = performance.now();
      const r = await timedBulk(o.lg, `http://${kas.proxy.host}:${kas.proxy.port}/stream`, o.headers, o.seconds);
      const half = Math.floor(r.buckets.length / 2);
      const lastHalf = r.buckets.slice(half);
      const v: LongLinkVariant = {
        name: setup.name,
        bytes: r.bytes,
        seconds: r.seconds,
        mbps: r.bytes / r.seconds / 1e6,
        lastHalfMBps: lastHalf.reduce((a, b) => a + b, 0) / Math.max(1, lastHalf.length) / 1e6,
        timeline: r.buckets.map((b) => Math.round(b / 1e4) / 100),
      };
      variants.push(v);
      console.log(`  long link ${setup.name}: ${v.mbps.toFixed(2)} MB/s overall, ${v.lastHalfMBps.toFixed(2)} MB/s in the second half (${Math.round(performance.now() - t0)} ms)`);
      for (const p of [agentk.proc, kas.proc]) await stopProcess(p);
    }
  } finally {
    for (const p of procs) await stopProcess(p);
    await netns?.cleanup();
  }
  const grown = variants[0];
  const windowsGrow = grown ? grown.lastHalfMBps > 2 * capMBps : null;
  return {
    method,
    rttMs: 2 * DELAY_MS,
    fallbackReason,
    fixedWindowCapMBps: Math.round(capMBps * 100) / 100,
    variants,
    windowsGrow,
    note: `theoretical cap of a fixed 256 KiB window at ${2 * DELAY_MS} ms RTT: ${capMBps.toFixed(2)} MB/s; windows ${windowsGrow === null ? 'not measured' : windowsGrow ? 'DO grow with the round trip (second half well above the fixed-window cap)' : 'do NOT grow enough (second half within 2 × the fixed-window cap)'}`,
  };
}
