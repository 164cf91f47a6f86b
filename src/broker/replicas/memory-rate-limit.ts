/** The connection rate limit of a single replica: a per-token fixed window of one minute, in memory. */
import type { ConnectionRateLimit } from './replica-state.js';

export class MemoryConnectionRateLimit implements ConnectionRateLimit {
  private window = -1;
  private readonly counts = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

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

  allow(key: string, limit: number): Promise<boolean> {
    return Promise.resolve(this.take(key, limit));
  }
}
