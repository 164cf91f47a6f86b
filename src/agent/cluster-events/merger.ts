/**
 * Merges repeats of cluster events and limits how many agentk sends. Repeats (same object, reason
 * and message) are one entry with a running count and the latest time; an entry waiting to be sent
 * takes further repeats for free, and sending it again later costs one token of the rate limit. A
 * repeat over the rate is still counted in its entry, so the next record that goes out carries the
 * right total. Both the entries remembered and the records waiting are bounded.
 */
import type { EventRecord } from '../../protocol/cluster-events.js';
import type { ClusterEventsAgentMetrics } from './metrics.js';
import type { TokenBucket } from './token-bucket.js';

interface Entry {
  record: EventRecord;
  queued: boolean;
}

export interface EventMergerOptions {
  bucket: TokenBucket;
  metrics: ClusterEventsAgentMetrics;
  /** Distinct events remembered for merging (least recently seen forgotten first). */
  maxEntries?: number;
  /** Records waiting to be sent; past it the oldest waiting one is dropped. */
  maxQueued?: number;
  /** Called when a record starts waiting (the sender schedules a write). */
  onQueued?: () => void;
}

export const DEFAULT_MAX_ENTRIES = 5000;
export const DEFAULT_MAX_QUEUED = 1000;

export function repeatKey(r: EventRecord): string {
  const o = r.object;
  return [o.apiVersion ?? '', o.kind, o.namespace ?? '', o.name, r.reason, r.message].join('\0');
}

export class EventMerger {
  /** In order of last use: the first is the one forgotten next. */
  private readonly entries = new Map<string, Entry>();
  private queue: string[] = [];
  private readonly maxEntries: number;
  private readonly maxQueued: number;

  constructor(private readonly o: EventMergerOptions) {
    this.maxEntries = o.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.maxQueued = o.maxQueued ?? DEFAULT_MAX_QUEUED;
  }

  /** Records waiting to be sent. */
  get queued(): number {
    return this.queue.length;
  }

  /** An event happened `record.count` more times. */
  add(record: EventRecord): void {
    const key = repeatKey(record);
    const entry = this.entries.get(key);
    if (entry) {
      const r = entry.record;
      r.count = Math.min(0x7fffffff, r.count + record.count);
      if (Date.parse(record.lastTime) > Date.parse(r.lastTime)) r.lastTime = record.lastTime;
      if (record.reporter) r.reporter = record.reporter;
      this.entries.delete(key);
      this.entries.set(key, entry);
      if (!entry.queued) this.enqueue(key, entry);
      return;
    }
    if (!this.o.bucket.tryTake()) {
      this.o.metrics.dropped.inc({ reason: 'rate_limit' }, record.count);
      return;
    }
    const fresh: Entry = { record: { ...record, object: { ...record.object } }, queued: false };
    this.entries.set(key, fresh);
    this.push(key, fresh);
    this.forget();
  }

  /** Takes up to `max` waiting records, oldest first, with their totals as of now. */
  take(max: number): EventRecord[] {
    const keys = this.queue.splice(0, max);
    const out: EventRecord[] = [];
    for (const key of keys) {
      const entry = this.entries.get(key);
      if (!entry) continue;
      entry.queued = false;
      out.push({ ...entry.record, object: { ...entry.record.object } });
    }
    return out;
  }

  private enqueue(key: string, entry: Entry): void {
    if (this.o.bucket.tryTake()) this.push(key, entry);
    else this.o.metrics.dropped.inc({ reason: 'rate_limit' });
  }

  private push(key: string, entry: Entry): void {
    entry.queued = true;
    this.queue.push(key);
    this.o.onQueued?.();
    if (this.queue.length > this.maxQueued) {
      const oldest = this.entries.get(this.queue.shift()!);
      if (oldest) oldest.queued = false;
      this.o.metrics.dropped.inc({ reason: 'queue_full' });
    }
  }

  /** Forgets the least recently seen entries that are not waiting, past maxEntries. */
  private forget(): void {
    if (this.entries.size <= this.maxEntries) return;
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.maxEntries) break;
      if (!entry.queued) this.entries.delete(key);
    }
  }
}
