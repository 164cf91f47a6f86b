/** Polling for a condition in tests that cannot be told when it becomes true. */

export interface WaitOptions {
  /** Pause between checks, ms (default 10). */
  intervalMs?: number;
  /** More to say when the wait times out (process output, state). */
  describe?: () => string;
}

/** Checks `cond` until it holds; rejects after `timeoutMs` naming what it waited for. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000, options: WaitOptions = {}): Promise<void> {
  const interval = options.intervalMs ?? 10;
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${options.describe ? `\n${options.describe()}` : ''}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** What `waitForOutput` needs of a running child process. */
export interface WatchedProcess {
  /** Its name in errors. */
  name: string;
  /** Called whenever the process writes or exits; `waitForOutput` adds and removes its check here. */
  listeners: Set<() => void>;
  running: () => boolean;
  describe: () => string;
}

/**
 * Resolves with the first non-undefined result of `find` (run on every notification of new
 * output); rejects when the process exits first or after `timeoutMs`, with its description.
 */
export function waitForOutput<T>(p: WatchedProcess, find: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const check = () => {
      const v = find();
      if (v !== undefined) {
        done();
        resolve(v);
      } else if (!p.running()) {
        done();
        reject(new Error(`${p.name} exited before ${what}: ${p.describe()}`));
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${p.describe()}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      p.listeners.delete(check);
    };
    p.listeners.add(check);
    check();
  });
}
