/**
 * A Prometheus counter for the hot path: `inc` only adds to a plain number kept per label set, and
 * the sums go into the prom-client counter when it is collected (prom-client sorts and hashes the
 * labels on every inc of a plain Counter, which costs more than the work it counts on a small
 * request or a chunk). A scrape, `get()` and the registry's text see every increment made before.
 */
import { Counter, type CounterConfiguration, type LabelValues } from 'prom-client';

interface Pending<T extends string> {
  labels: LabelValues<T>;
  sum: number;
}

export class TalliedCounter<T extends string = string> {
  readonly counter: Counter<T>;
  private readonly pending = new Map<string, Pending<T>>();
  private readonly names: readonly T[];

  constructor(config: Omit<CounterConfiguration<T>, 'collect'>) {
    const pending = this.pending;
    this.names = config.labelNames ?? [];
    this.counter = new Counter<T>({
      ...config,
      collect() {
        for (const p of pending.values()) {
          if (p.sum === 0) continue;
          this.inc(p.labels, p.sum);
          p.sum = 0;
        }
      },
    });
  }

  /** Adds `n` (default 1) to the series of `labels`. */
  inc(labels: LabelValues<T>, n = 1): void {
    let key = '';
    for (const name of this.names) key += `${labels[name] ?? ''}\u0000`;
    const p = this.pending.get(key);
    if (p && Number.isFinite(n) && n >= 0) {
      p.sum += n;
      return;
    }
    // A label set's first increment (and a bad one) goes to prom-client at once: it checks the
    // labels and the value (a wrong one throws here, not at a scrape), and the series exists now.
    this.counter.inc(labels, n);
    if (!p) this.pending.set(key, { labels: { ...labels }, sum: 0 });
  }
}
