/**
 * The events kas keeps: a ring of at most `ringSize` events per agent, all rings together under a
 * byte budget. An event is kept as the JSON text the API serves (so its size is known and it is
 * encoded once). A newer event with the same merge key (same source, object, reason and message: a
 * repeat with new totals) replaces the older one. Over the budget, the oldest events of the agents
 * that hold the most bytes go first, down to a low-water mark, so one noisy agent cannot push out
 * everyone else's events. Not safe for concurrent use; kas calls it from its event loop only.
 */
import type { ClusterEventsMetrics } from './metrics.js';

/** One stored event. */
export interface StoredEvent {
  /** kas's id of the event: increasing in the order kas stored events. */
  readonly id: number;
  /** Events with the same key are repeats of one event; the newest replaces the others. */
  readonly key: string;
  /** The event's last occurrence, ms since the epoch (for `since=<time>`). */
  readonly lastTimeMs: number;
  /** The event as the API serves it. */
  readonly json: string;
  /** What the event is counted as against the budget. */
  readonly bytes: number;
}

/** Bytes an entry costs beyond its strings (the object, the array slot): an estimate, kept honest by the memory benchmark. */
const ENTRY_OVERHEAD = 96;

/** The budget is brought back to this fraction of itself when exceeded, so eviction scans are rare. */
const LOW_WATER = 0.95;

export function entryBytes(key: string, json: string): number {
  return json.length + key.length + ENTRY_OVERHEAD;
}

class Ring {
  /** Oldest first. */
  readonly events: StoredEvent[] = [];
  bytes = 0;
}

export interface EventStoreOptions {
  ringSize: number;
  maxBytes: number;
  metrics?: ClusterEventsMetrics;
}

export class EventStore {
  private readonly rings = new Map<number, Ring>();
  private totalBytes = 0;
  private totalEvents = 0;

  constructor(private readonly o: EventStoreOptions) {
    o.metrics?.observe(() => ({ events: this.totalEvents, bytes: this.totalBytes, agents: this.rings.size }));
  }

  get bytes(): number {
    return this.totalBytes;
  }

  get count(): number {
    return this.totalEvents;
  }

  /** Agents with at least one event. */
  get agents(): number {
    return this.rings.size;
  }

  /**
   * Adds events of an agent. Events whose id is already stored are skipped (one may come both from a
   * replay and live); the ring stays ordered by id. Returns false when the event was not kept (older
   * than a stored repeat of it, or already there).
   */
  add(agentId: number, e: StoredEvent): boolean {
    let ring = this.rings.get(agentId);
    if (!ring) {
      ring = new Ring();
      this.rings.set(agentId, ring);
    }
    const list = ring.events;
    let at = list.length;
    while (at > 0 && list[at - 1]!.id > e.id) at--;
    if (at > 0 && list[at - 1]!.id === e.id) return false;
    for (let i = list.length - 1; i >= 0; i--) {
      const old = list[i]!;
      if (old.key !== e.key) continue;
      if (old.id > e.id) return false;
      list.splice(i, 1);
      if (i < at) at--;
      this.removed(ring, old);
      this.o.metrics?.dropped.inc({ reason: 'merged' });
      break;
    }
    list.splice(at, 0, e);
    ring.bytes += e.bytes;
    this.totalBytes += e.bytes;
    this.totalEvents++;
    while (list.length > this.o.ringSize) {
      this.removed(ring, list.shift()!);
      this.o.metrics?.dropped.inc({ reason: 'ring_full' });
    }
    if (this.totalBytes > this.o.maxBytes) this.evict();
    return list.includes(e);
  }

  /**
   * An agent's events, newest first: those after `since` (an id, or a time compared with each
   * event's last occurrence), at most `limit`.
   */
  list(agentId: number, query: { sinceId?: number; sinceTimeMs?: number; limit: number }): StoredEvent[] {
    const list = this.rings.get(agentId)?.events ?? [];
    const out: StoredEvent[] = [];
    for (let i = list.length - 1; i >= 0 && out.length < query.limit; i--) {
      const e = list[i]!;
      if (query.sinceId !== undefined && e.id <= query.sinceId) break;
      if (query.sinceTimeMs !== undefined && e.lastTimeMs <= query.sinceTimeMs) continue;
      out.push(e);
    }
    return out;
  }

  /** The largest id stored for the agent, or 0. */
  lastId(agentId: number): number {
    const list = this.rings.get(agentId)?.events;
    return list && list.length > 0 ? list[list.length - 1]!.id : 0;
  }

  /** Agent ids and their bytes, largest first (for tests and logs). */
  usage(): Array<{ agentId: number; bytes: number; events: number }> {
    return [...this.rings].map(([agentId, r]) => ({ agentId, bytes: r.bytes, events: r.events.length })).sort((a, b) => b.bytes - a.bytes);
  }

  private removed(ring: Ring, e: StoredEvent): void {
    ring.bytes -= e.bytes;
    this.totalBytes -= e.bytes;
    this.totalEvents--;
  }

  /** Evicts the oldest events of the agents with the most bytes until the total is at the low-water mark. */
  private evict(): void {
    const target = Math.floor(this.o.maxBytes * LOW_WATER);
    while (this.totalBytes > target) {
      let first: [number, Ring] | null = null;
      let second = 0;
      for (const entry of this.rings) {
        const bytes = entry[1].bytes;
        if (!first || bytes > first[1].bytes) {
          if (first) second = Math.max(second, first[1].bytes);
          first = entry;
        } else if (bytes > second) second = bytes;
      }
      if (!first) return;
      const [agentId, ring] = first;
      // Down to the next largest agent (then the scan picks again), or to the target.
      do {
        this.removed(ring, ring.events.shift()!);
        this.o.metrics?.dropped.inc({ reason: 'memory_budget' });
      } while (ring.events.length > 0 && ring.bytes >= second && this.totalBytes > target);
      if (ring.events.length === 0) this.rings.delete(agentId);
    }
  }
}
