/**
 * One request's cancellation (its client went away). Most requests never wait on anything that takes
 * an AbortSignal, and making an AbortController for every request cost about a twentieth of kas's
 * CPU at thousands of requests a second, so the signal is made only when something asks for it.
 */
export class Cancellation {
  private controller: AbortController | null = null;
  private hook: (() => void) | null = null;
  private cancelled = false;

  get aborted(): boolean {
    return this.cancelled;
  }

  /** An AbortSignal that aborts with this cancellation (made on first use). */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.cancelled) this.controller.abort();
    }
    return this.controller.signal;
  }

  /** Runs `fn` on cancellation (at most one at a time); call the returned function to remove it. */
  onCancel(fn: () => void): () => void {
    this.hook = fn;
    return () => {
      if (this.hook === fn) this.hook = null;
    };
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.controller?.abort();
    const hook = this.hook;
    this.hook = null;
    hook?.();
  }
}
