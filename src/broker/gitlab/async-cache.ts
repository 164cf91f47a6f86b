/**
 * A bounded in-memory cache of asynchronous answers with per-result TTLs and single flight:
 * concurrent look-ups of one key share one load. Keys must not contain secrets (hash them).
 */
export type Outcome<V> = { ok: true; value: V } | { ok: false; error: unknown };

interface Entry<V> {
  outcome: Outcome<V>;
  expires: number;
}

export class AsyncCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly inflight = new Map<string, Promise<V>>();

  constructor(
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The cached answer for `key`, or the result of `load` (shared with concurrent callers).
   * `ttl(outcome)` says how long to keep an outcome, ms; 0 keeps nothing.
   */
  get(key: string, load: () => Promise<V>, ttl: (outcome: Outcome<V>) => number): Promise<V> {
    const hit = this.entries.get(key);
    if (hit && hit.expires > this.now()) return hit.outcome.ok ? Promise.resolve(hit.outcome.value) : Promise.reject(hit.outcome.error);
    if (hit) this.entries.delete(key);
    const running = this.inflight.get(key);
    if (running) return running;
    const p = load().then(
      (value) => {
        this.store(key, { ok: true, value }, ttl);
        return value;
      },
      (error: unknown) => {
        this.store(key, { ok: false, error }, ttl);
        throw error;
      },
    );
    const tracked = p.finally(() => this.inflight.delete(key));
    tracked.catch(() => undefined);
    this.inflight.set(key, tracked);
    return tracked;
  }

  /** Replaces what is cached for `key` (e.g. after a fresh look-up done outside get). */
  put(key: string, outcome: Outcome<V>, ttlMs: number): void {
    this.entries.delete(key);
    if (ttlMs > 0) this.insert(key, { outcome, expires: this.now() + ttlMs });
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }

  private store(key: string, outcome: Outcome<V>, ttl: (o: Outcome<V>) => number): void {
    const ms = ttl(outcome);
    if (ms > 0) this.insert(key, { outcome, expires: this.now() + ms });
  }

  private insert(key: string, entry: Entry<V>): void {
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, entry);
  }
}
