/**
 * Process helpers of the benchmarks: start a program as its own process with its output in a log
 * file, find the addresses it logged, read its memory and CPU time from /proc, stop it by pid.
 * Every process started here is remembered, so a failing benchmark still stops all of them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';

export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  logFile: string;
  /** Resolves with the exit code (or the signal name) once the process is gone. */
  exited: Promise<number | string>;
  alive(): boolean;
}

const started = new Set<Proc>();

export interface StartOptions {
  logDir: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Raise the open-files limit to this (or to the hard limit when not permitted) before exec. */
  nofile?: number;
  /** Run inside this network namespace (ip netns exec). */
  netns?: string;
}

let seq = 0;

/** Starts `command args` with stdout and stderr in `<logDir>/<name>.log`. The pid is the program's own (sh and ip exec it). */
export function startProcess(name: string, command: string, args: readonly string[], options: StartOptions): Proc {
  const logFile = join(options.logDir, `${name}-${++seq}.log`);
  const fd = openSync(logFile, 'a');
  let cmd = command;
  let argv = [...args];
  if (options.nofile !== undefined) {
    argv = ['-c', `ulimit -n ${options.nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`, cmd, ...argv];
    cmd = 'sh';
  }
  if (options.netns !== undefined) {
    argv = ['netns', 'exec', options.netns, cmd, ...argv];
    cmd = 'ip';
  }
  const child = spawn(cmd, argv, { stdio: ['ignore', fd, fd], env: options.env ?? process.env, cwd: options.cwd, detached: false });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`cannot start ${name}: ${command}`);
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      started.delete(proc);
      resolve(code ?? signal ?? 'unknown');
    });
    child.once('error', () => {
      done = true;
      started.delete(proc);
      resolve('spawn-error');
    });
  });
  const proc: Proc = { name, child, pid: child.pid, logFile, exited, alive: () => !done };
  started.add(proc);
  return proc;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Parsed JSON lines of a log file (lines that are not JSON are skipped). */
export function jsonLines(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  const out: Record<string, unknown>[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      /* a line being written */
    }
  }
  return out;
}

export function tail(file: string, lines = 15): string {
  if (!existsSync(file)) return '';
  return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
}

/**
 * Waits until the process has logged a `"listener"` line for every name in `names` and returns
 * the bound addresses. Fails early when the process exits.
 */
export async function waitForListeners(proc: Proc, names: readonly string[], timeoutMs = 20_000, pollMs = 50): Promise<Record<string, string>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found: Record<string, string> = {};
    for (const line of jsonLines(proc.logFile)) {
      if (typeof line.listener === 'string' && typeof line.address === 'string') found[line.listener] = line.address;
    }
    if (names.every((n) => found[n] !== undefined)) return found;
    if (!proc.alive()) throw new Error(`${proc.name} exited before listening:\n${tail(proc.logFile)}`);
    if (Date.now() > deadline) throw new Error(`${proc.name} did not log its listeners ${names.join(', ')} within ${timeoutMs} ms:\n${tail(proc.logFile)}`);
    await sleep(pollMs);
  }
}

/** Sends `signal`, waits up to `graceMs`, then SIGKILL. */
export async function stopProcess(proc: Proc, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
  if (!proc.alive()) return;
  try {
    process.kill(proc.pid, signal);
  } catch {
    return;
  }
  const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), graceMs).unref());
  if ((await Promise.race([proc.exited, timer])) === 'timeout' && proc.alive()) {
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await proc.exited;
  }
}

/** Kills every process still running (by pid), for the end of a run or a failure. */
export async function stopAll(): Promise<void> {
  await Promise.all([...started].map((p) => stopProcess(p, 'SIGTERM', 3000)));
}

/** SIGKILL to every remaining process, synchronously (for process 'exit'). */
export function killAllNow(): void {
  for (const p of started) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** Resident set size of a process in bytes (VmRSS), or 0 when it is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

const CLOCK_TICKS = 100;

/** CPU time (user + system) a process has used, in ms; 0 when it is gone. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command: state(0) ppid(1) ... utime(11) stime(12).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** Read and write system calls `pid` has made so far (/proc/PID/io); zeros when it is gone. */
export function ioCalls(pid: number): { reads: number; writes: number } {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const reads = Number(/^syscr: (\d+)$/m.exec(io)?.[1] ?? 0);
    const writes = Number(/^syscw: (\d+)$/m.exec(io)?.[1] ?? 0);
    return { reads, writes };
  } catch {
    return { reads: 0, writes: 0 };
  }
}

/** Pids of every descendant of `pid` (children, grandchildren, ...). */
export function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(entry), ppid);
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

/** A TCP port that was free a moment ago (for programs that cannot bind port 0 and report it, such as ssh -R). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Resolves once a TCP connection to host:port succeeds. */
export async function waitForPort(host: string, port: number, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`the process behind ${host}:${port} exited`);
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Runs a command to completion, capturing its output. */
export function run(command: string, args: readonly string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = options.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), options.timeoutMs) : null;
    child.once('error', (err) => {
      if (timer) clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr + String(err) });
    });
    child.once('close', (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** True when `command` is on the PATH. */
export async function have(command: string): Promise<boolean> {
  return (await run('sh', ['-c', `command -v ${command}`])).code === 0;
}
