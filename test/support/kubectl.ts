/**
 * Running the real kubectl (on the PATH) in tests: an isolated environment (a temporary HOME and
 * kubeconfig, nothing of the user's), one-shot commands with a timeout, long-running ones (watch,
 * port-forward) whose output can be awaited, and failures that print the command and its output.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { waitForOutput } from './wait.js';

export const KUBECTL_TIMEOUT_MS = 15_000;

export interface KubectlResult {
  args: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function explain(r: KubectlResult): string {
  return `kubectl ${r.args.join(' ')} exited with ${r.code ?? r.signal}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

export function assertSucceeded(r: KubectlResult): void {
  if (r.code !== 0) throw new Error(`expected success: ${explain(r)}`);
}

export function assertStdout(r: KubectlResult, expected: string | RegExp): void {
  assertSucceeded(r);
  const ok = typeof expected === 'string' ? r.stdout.includes(expected) : expected.test(r.stdout);
  if (!ok) throw new Error(`expected stdout to contain ${String(expected)}: ${explain(r)}`);
}

export interface KubeconfigTarget {
  server: string;
  caPem: string;
  token: string;
}

export interface LongRunningKubectl {
  child: ChildProcess;
  readonly stdout: string;
  running(): boolean;
  describe(): string;
  /** Resolves with the first match of `pattern` in stdout; rejects if kubectl exits or after `timeoutMs`. */
  waitFor(pattern: RegExp, what: string, timeoutMs?: number): Promise<RegExpExecArray>;
}

export class Kubectl {
  readonly dir: string;
  /** The kubeconfig used when a call names none. */
  kubeconfig: string;
  private readonly children = new Set<ChildProcess>();

  private constructor(dir: string) {
    this.dir = dir;
    this.kubeconfig = path.join(dir, 'kubeconfig');
  }

  /** A runner with its own temporary HOME; `target` becomes its default kubeconfig. */
  static async create(target: KubeconfigTarget): Promise<Kubectl> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubectl-'));
    await fs.mkdir(path.join(dir, 'home'));
    const k = new Kubectl(dir);
    await k.writeKubeconfig(k.kubeconfig, target);
    return k;
  }

  async writeKubeconfig(file: string, target: KubeconfigTarget): Promise<string> {
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'target', cluster: { server: target.server, 'certificate-authority-data': Buffer.from(target.caPem).toString('base64') } }],
      users: [{ name: 'target', user: { token: target.token } }],
      contexts: [{ name: 'target', context: { cluster: 'target', user: 'target', namespace: 'default' } }],
      'current-context': 'target',
    };
    await fs.writeFile(file, JSON.stringify(config, null, 2));
    return file;
  }

  env(extra: Record<string, string> = {}, config = this.kubeconfig): NodeJS.ProcessEnv {
    // Only what kubectl needs: no user kubeconfig, cache or credentials leak in.
    return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: path.join(this.dir, 'home'), KUBECONFIG: config, ...extra };
  }

  run(args: string[], options: { env?: Record<string, string>; input?: string; config?: string } = {}): Promise<KubectlResult> {
    return new Promise((resolve) => {
      const child = execFile('kubectl', args, { env: this.env(options.env, options.config), timeout: KUBECTL_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
        this.children.delete(child);
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        resolve({ args, code, signal: (error?.signal as NodeJS.Signals | undefined) ?? null, stdout, stderr: `${stderr}${error && code === null ? `\n(${error.message})` : ''}` });
      });
      this.children.add(child);
      child.stdin?.end(options.input ?? '');
    });
  }

  /** A long-running kubectl (watch, port-forward) whose output can be awaited. */
  start(args: string[], env: Record<string, string> = {}): LongRunningKubectl {
    const child = spawn('kubectl', args, { env: this.env(env), stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    let stdout = '';
    let stderr = '';
    const listeners = new Set<() => void>();
    const notify = () => {
      for (const l of listeners) l();
    };
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      notify();
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      notify();
    });
    child.on('exit', notify);
    const running = () => child.exitCode === null && child.signalCode === null;
    const describe = () => `kubectl ${args.join(' ')} (${running() ? 'still running' : `exited with ${child.exitCode ?? child.signalCode}`})\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
    return {
      child,
      get stdout() {
        return stdout;
      },
      running,
      describe,
      waitFor(pattern: RegExp, what: string, timeoutMs = KUBECTL_TIMEOUT_MS): Promise<RegExpExecArray> {
        return waitForOutput({ name: 'kubectl', listeners, running, describe }, () => pattern.exec(stdout) ?? undefined, what, timeoutMs);
      },
    };
  }

  /** Kills every kubectl still running (call in afterEach). */
  killAll(): void {
    for (const child of this.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    this.children.clear();
  }

  async cleanup(): Promise<void> {
    this.killAll();
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}
