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
