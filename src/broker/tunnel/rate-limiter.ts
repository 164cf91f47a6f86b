/** A per-key fixed window of one minute, in memory: the connection rate limit of a single replica. */
export class FixedWindowLimiter {
  private window = -1;
  private readonly counts = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Counts one use of `key`; false when it is over `limit` in the current minute. */
  take(key: string, limit: number): boolean {
    const minute = Math.floor(this.now() / 60_000);
    if (minute !== this.window) {
      this.window = minute;
      this.counts.clear();
    }
    const n = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, n);
    return n <= limit;
  }
}
