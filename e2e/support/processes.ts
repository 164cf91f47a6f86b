/**
 * Child processes of the end-to-end tests (etcd, kube-apiserver, kas, agentk): started with their
 * output captured, awaited on a log line, and stopped by pid: by the test (`stop()`, SIGTERM then
 * SIGKILL), by a process `exit` handler when the test process ends without stopping them, and by a
 * small watchdog shell when the test process dies without running any handler (jest killing a
 * worker): the watchdog polls the test process's pid and stops the child by its pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { waitForOutput } from '../../test/support/wait.js';

const OUTPUT_LIMIT = 1024 * 1024;

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** The last 256 KiB of stdout and stderr, interleaved. */
  readonly output: string;
  running(): boolean;
  /** The first line of stdout or stderr for which `match` returns a value; rejects if the process exits or after `timeoutMs`. */
  waitForLine<T>(match: (line: string) => T | undefined, what: string, timeoutMs?: number): Promise<T>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
  /** "name (pid N, running|exited with X)" and the tail of its output, for error messages. */
  describe(tailChars?: number): string;
}

const live = new Map<number, ManagedProcess>();
let exitHandlerInstalled = false;

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on('exit', () => {
    for (const p of live.values()) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

const WATCHDOG = `
parent=$1; child=$2
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
if kill -0 "$child" 2>/dev/null; then
  kill -TERM "$child" 2>/dev/null; sleep 5; kill -KILL "$child" 2>/dev/null
fi
`;

export function startProcess(name: string, command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): ManagedProcess {
  installExitHandler();
  const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`could not start ${name} (${command}): is it installed?`);
  const pid = child.pid;
  const watchdog = spawn('sh', ['-c', WATCHDOG, 'watchdog', String(process.pid), String(pid)], { stdio: 'ignore', detached: true });
  watchdog.unref();
  let output = '';
  const lines: string[] = [];
  const partial = { stdout: '', stderr: '' };
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const l of [...listeners]) l();
  };
  const onData = (which: 'stdout' | 'stderr') => (d: string) => {
    output = (output + d).slice(-OUTPUT_LIMIT);
    const parts = (partial[which] + d).split('\n');
    partial[which] = parts.pop() ?? '';
    lines.push(...parts);
    notify();
  };
  child.stdout!.setEncoding('utf8').on('data', onData('stdout'));
  child.stderr!.setEncoding('utf8').on('data', onData('stderr'));
  let exitedWith: string | null = null;
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      exitedWith = code !== null ? `code ${code}` : `signal ${signal}`;
      live.delete(pid);
      if (watchdog.pid !== undefined) {
        try {
          process.kill(watchdog.pid, 'SIGKILL');
        } catch {
          /* the watchdog already ended */
        }
      }
      notify();
      resolve();
    });
  });
  child.on('error', (err) => {
    output += `\n(${name} failed to run: ${err.message})`;
  });
  const running = () => exitedWith === null;
  const describe = (tailChars = 4000) => `${name} (pid ${pid}, ${running() ? 'running' : `exited with ${exitedWith}`})\n--- last output ---\n${output.slice(-tailChars)}`;

  const managed: ManagedProcess = {
    name,
    pid,
    child,
    get output() {
      return output;
    },
    running,
    describe,
    waitForLine<T>(match: (line: string) => T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
      let seen = 0;
      const find = () => {
        for (; seen < lines.length; seen++) {
          const v = match(lines[seen]!);
          if (v !== undefined) return v;
        }
        return undefined;
      };
      return waitForOutput({ name, listeners, running, describe: () => describe() }, find, what, timeoutMs);
    },
    async stop(graceMs = 10_000) {
      if (!running()) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (running()) child.kill('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  live.set(pid, managed);
  return managed;
}

/** The JSON log line of a listener ({"listener": name, "address": "host:port"}) of kas or agentk. */
export function listenerAddress(listener: string): (line: string) => string | undefined {
  return (line) => {
    if (!line.startsWith('{')) return undefined;
    try {
      const entry = JSON.parse(line) as { listener?: unknown; address?: unknown };
      return entry.listener === listener && typeof entry.address === 'string' ? entry.address : undefined;
    } catch {
      return undefined;
    }
  };
}
