/**
 * The client side of the benchmark: wrk (requests/second, latency), curl (bulk), the Node load
 * generator process (bench/loadgen.ts), all started as their own processes; GNU time reports the
 * client's own CPU time so the tables can say where the CPU went.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { DIST, type HostPort } from './stack.js';
import { run } from './proc.js';

export const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

/** Runs a command under GNU time (when installed); returns its output and the CPU seconds it used. */
async function timed(command: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string; cpuMs: number | null }> {
  if (!GNU_TIME) return { ...(await run(command, args, { timeoutMs })), cpuMs: null };
  const r = await run(GNU_TIME, ['-f', 'GNUTIME %U %S %M', command, ...args], { timeoutMs });
  const m = /GNUTIME ([\d.]+) ([\d.]+) (\d+)/.exec(r.stderr);
  return { ...r, stderr: r.stderr.replace(/GNUTIME.*\n?/, ''), cpuMs: m ? (Number(m[1]) + Number(m[2])) * 1000 : null };
}

// ---- wrk ---------------------------------------------------------------------------------------

const WRK_LUA = `
done = function(summary, latency, requests)
  io.write(string.format("WRKJSON {\\"requests\\":%d,\\"durationUs\\":%d,\\"bytes\\":%d,\\"connectErrors\\":%d,\\"readErrors\\":%d,\\"writeErrors\\":%d,\\"statusErrors\\":%d,\\"timeouts\\":%d,\\"p50Us\\":%d,\\"p90Us\\":%d,\\"p99Us\\":%d,\\"p999Us\\":%d,\\"maxUs\\":%d,\\"meanUs\\":%.1f}\\n",
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
`;

export interface WrkResult {
  requests: number;
  durationUs: number;
  bytes: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  statusErrors: number;
  timeouts: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  meanUs: number;
  rps: number;
  errors: number;
  clientCpuMs: number | null;
}

export class Wrk {
  private readonly script: string;

  constructor(dir: string) {
    this.script = join(dir, 'bench-wrk.lua');
    writeFileSync(this.script, WRK_LUA);
  }

  /** Small GETs on `connections` keep-alive connections for `seconds`. Non-2xx answers count as errors. */
  async run(url: string, connections: number, seconds: number, headers: Record<string, string>): Promise<WrkResult> {
    const args = ['-t', '1', '-c', String(connections), '-d', `${seconds}s`, '--timeout', '5s', '-s', this.script];
    for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
    args.push(url);
    const r = await timed('wrk', args, (seconds + 30) * 1000);
    const line = r.stdout.split('\n').find((l) => l.startsWith('WRKJSON '));
    if (!line) throw new Error(`wrk printed no result (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    const parsed = JSON.parse(line.slice(8)) as Omit<WrkResult, 'rps' | 'errors' | 'clientCpuMs'>;
    const errors = parsed.connectErrors + parsed.readErrors + parsed.writeErrors + parsed.statusErrors + parsed.timeouts;
    return { ...parsed, rps: parsed.requests / (parsed.durationUs / 1e6), errors, clientCpuMs: r.cpuMs };
  }
}

// ---- curl --------------------------------------------------------------------------------------

export interface BulkResult {
  bytes: number;
  seconds: number;
  mbps: number;
  clientCpuMs: number | null;
}

/** One GET of a large body with curl, to /dev/null. Throws unless it is a 200 with every byte. */
export async function curlBulk(url: string, expectBytes: number, headers: Record<string, string>, timeoutMs: number): Promise<BulkResult> {
  const args = ['-sS', '-o', '/dev/null', '--max-time', String(Math.ceil(timeoutMs / 1000)), '-w', 'CURL %{http_code} %{size_download} %{time_total}\n'];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url);
  const r = await timed('curl', args, timeoutMs + 5000);
  const m = /CURL (\d+) (\d+) ([\d.]+)/.exec(r.stdout);
  if (!m) throw new Error(`curl printed no result (exit ${r.code}): ${r.stderr.trim()}`);
  const [, code, size, total] = m;
  if (code !== '200' || Number(size) !== expectBytes) throw new Error(`curl got HTTP ${code} and ${size} of ${expectBytes} bytes (exit ${r.code}) ${r.stderr.trim()}`);
  const seconds = Number(total);
  return { bytes: Number(size), seconds, mbps: Number(size) / seconds / 1e6, clientCpuMs: r.cpuMs };
}

// ---- the Node load generator -------------------------------------------------------------------

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string } | { id: number; event: 'ready'; [k: string]: unknown };

export class LoadGen {
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; onReady?: (info: Record<string, unknown>) => void }>();

  constructor() {
    this.child = fork(join(DIST, 'bench/loadgen.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: Reply) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      if ('event' in m) {
        w.onReady?.(m);
        return;
      }
      this.waiting.delete(m.id);
      if (m.ok) w.resolve(m.result);
      else w.reject(new Error(m.error));
    });
    this.child.on('exit', () => {
      for (const w of this.waiting.values()) w.reject(new Error('the load generator exited'));
      this.waiting.clear();
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Starts a job; `onReady` hears its 'ready' event (stall, holbg). Resolves with its result. */
  job<T>(job: Record<string, unknown>, onReady?: (info: Record<string, unknown>) => void): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, onReady });
      this.child.send({ ...job, id });
    });
  }

  /** Tells the running stall/holbg job to let go. */
  release(): void {
    this.child.send({ id: 0, job: 'release' });
  }

  stop(): void {
    this.child.disconnect();
  }
}

/** Starts a job that reports 'ready' and waits for a release; resolves once ready, with the result promise. */
export function startHeld<T>(lg: LoadGen, job: Record<string, unknown>, timeoutMs: number): Promise<{ ready: Record<string, unknown>; done: Promise<T> }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${String(job.job)} not ready within ${timeoutMs} ms`)), timeoutMs);
    const done = lg.job<T>(job, (ready) => {
      clearTimeout(timer);
      resolve({ ready, done });
    });
    done.catch((err: unknown) => {
      clearTimeout(timer);
      reject(err as Error);
    });
  });
}

// ---- metrics -----------------------------------------------------------------------------------

/** A few gauges from a Prometheus /metrics endpoint (null when unreachable). */
export function scrape(address: HostPort, names: readonly string[]): Promise<Record<string, number> | null> {
  return new Promise((resolve) => {
    const req = http.get({ host: address.host, port: address.port, path: '/metrics', agent: false, timeout: 3000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        const out: Record<string, number> = {};
        for (const line of text.split('\n')) {
          const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? ([-\d.e+]+)/.exec(line);
          if (m && names.includes(m[1]!) && !m[2]) out[m[1]!] = Number(m[3]);
        }
        resolve(out);
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}
