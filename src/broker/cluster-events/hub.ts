/**
 * The cluster events of kas: events come in (from agentk's streams or other modules' `publish`),
 * are given an id by the fan-out (shared by all replicas with Redis), and every replica puts each
 * one in the agent's ring and hands it to the agent's watchers. Reads go to this replica's ring; the
 * first read of an agent on a replica also takes what Redis kept for it (events from before this
 * replica started).
 */
import { createHash } from 'node:crypto';
import { EVENT_LIMITS, EVENT_TYPES, truncate } from '../../protocol/cluster-events.js';
import type { Logger } from '../../shared/logger.js';
import type { EventStore, StoredEvent } from './event-store.js';
import { entryBytes } from './event-store.js';
import type { EventFanOut, SharedEvent } from './fan-out.js';
import type { ClusterEventsMetrics } from './metrics.js';
import type { ClusterEvent, ClusterEventInput, ClusterEventObject, ClusterEventsService } from './service.js';

/** Receives an agent's new events, oldest first. Must not throw. */
export type EventWatcher = (e: StoredEvent) => void;

/** Most agents whose history was read from Redis that this replica remembers as read. */
const MAX_HYDRATED = 100_000;

export interface ClusterEventsHubOptions {
  store: EventStore;
  fanOut: EventFanOut;
  metrics: ClusterEventsMetrics;
  logger: Logger;
  now?: () => number;
}

function time(value: string | undefined, fallback: number): { text: string; ms: number } {
  const ms = value === undefined ? NaN : Date.parse(value);
  return Number.isNaN(ms) ? { text: new Date(fallback).toISOString(), ms: fallback } : { text: truncate(value!, EVENT_LIMITS.time), ms };
}

function objectOf(o: ClusterEventObject | undefined): ClusterEventObject | undefined {
  if (!o) return undefined;
  const out: ClusterEventObject = { kind: truncate(o.kind, EVENT_LIMITS.kind), name: truncate(o.name, EVENT_LIMITS.name) };
  if (o.apiVersion) out.apiVersion = truncate(o.apiVersion, EVENT_LIMITS.apiVersion);
  if (o.namespace) out.namespace = truncate(o.namespace, EVENT_LIMITS.namespace);
  return out;
}

/** The merge key: repeats of one event (same source, object, reason and message) share it. */
export function mergeKey(e: Omit<ClusterEvent, 'id'>): string {
  const o = e.object;
  return createHash('sha1')
    .update([e.source, o?.apiVersion ?? '', o?.kind ?? '', o?.namespace ?? '', o?.name ?? '', e.reason, e.message].join('\0'))
    .digest('base64url');
}

export class ClusterEventsHub implements ClusterEventsService {
  private readonly watchers = new Map<number, Set<EventWatcher>>();
  private readonly hydrated = new Map<number, Promise<void>>();
  private readonly now: () => number;

  constructor(private readonly o: ClusterEventsHubOptions) {
    this.now = o.now ?? Date.now;
  }

  start(): Promise<void> {
    return this.o.fanOut.start((e) => this.deliver(e));
  }

  stop(): Promise<void> {
    return this.o.fanOut.stop();
  }

  publish(agentId: number, input: ClusterEventInput): void {
    if (!Number.isSafeInteger(agentId) || agentId <= 0 || !(EVENT_TYPES as readonly string[]).includes(input.type)) return;
    const now = this.now();
    const last = time(input.lastTime, now);
    const first = time(input.firstTime, last.ms);
    const event: Omit<ClusterEvent, 'id'> = {
      source: input.source,
      type: input.type,
      reason: truncate(input.reason, EVENT_LIMITS.reason),
      message: truncate(input.message, EVENT_LIMITS.message),
      count: Math.min(Math.max(1, Math.floor(input.count ?? 1)), 0x7fffffff),
      firstTime: first.text,
      lastTime: last.text,
      receivedAt: new Date(now).toISOString(),
    };
    const object = objectOf(input.object);
    if (object) event.object = object;
    if (input.reporter) event.reporter = truncate(input.reporter, EVENT_LIMITS.reporter);
    this.o.metrics.received.inc({ source: input.source });
    this.o.fanOut.publish(agentId, mergeKey(event), last.ms, JSON.stringify(event));
  }

  /** An agent's events, newest first (see EventStore.list). */
  async list(agentId: number, query: { sinceId?: number; sinceTimeMs?: number; limit: number }): Promise<StoredEvent[]> {
    await this.hydrate(agentId);
    return this.o.store.list(agentId, query);
  }

  /**
   * Calls `watcher` with each new event of the agent until the returned function is called. With
   * `sinceId`, the stored events after it come first (oldest first), then the live ones, without a
   * gap or a repeat.
   */
  async watch(agentId: number, watcher: EventWatcher, sinceId?: number): Promise<() => void> {
    let set = this.watchers.get(agentId);
    if (!set) {
      set = new Set();
      this.watchers.set(agentId, set);
    }
    // Registered before the history is read, but held back until it was sent: no event is lost or sent twice.
    const held: StoredEvent[] = [];
    let live = false;
    let lastSent = 0;
    const entry: EventWatcher = (e) => {
      if (!live) held.push(e);
      else if (e.id > lastSent) {
        lastSent = e.id;
        watcher(e);
      }
    };
    set.add(entry);
    const unwatch = (): void => {
      const s = this.watchers.get(agentId);
      s?.delete(entry);
      if (s?.size === 0) this.watchers.delete(agentId);
    };
    if (sinceId !== undefined) {
      lastSent = sinceId;
      await this.hydrate(agentId);
      held.unshift(...this.o.store.list(agentId, { sinceId, limit: Number.MAX_SAFE_INTEGER }));
      held.sort((a, b) => a.id - b.id);
    }
    live = true;
    for (const e of held.splice(0)) entry(e);
    return unwatch;
  }

  /** Watch requests open now, all agents. */
  get watcherCount(): number {
    let n = 0;
    for (const s of this.watchers.values()) n += s.size;
    return n;
  }

  private deliver(e: SharedEvent): void {
    const stored: StoredEvent = { id: e.id, key: e.key, lastTimeMs: e.lastTimeMs, json: e.json, bytes: entryBytes(e.key, e.json) };
    this.o.store.add(e.agentId, stored);
    const set = this.watchers.get(e.agentId);
    if (!set) return;
    for (const w of [...set]) w(stored);
  }

  /** Takes what other replicas stored for the agent, once per agent on this replica. */
  private hydrate(agentId: number): Promise<void> {
    let p = this.hydrated.get(agentId);
    if (!p) {
      if (this.hydrated.size >= MAX_HYDRATED) this.hydrated.clear();
      p = this.o.fanOut.history(agentId).then(
        (events) => {
          for (const e of events) this.o.store.add(agentId, { id: e.id, key: e.key, lastTimeMs: e.lastTimeMs, json: e.json, bytes: entryBytes(e.key, e.json) });
        },
        (err: unknown) => {
          // Served from this replica's ring for now; the next read tries again.
          this.hydrated.delete(agentId);
          this.o.logger.warn({ err, agentId }, 'could not read the cluster events Redis keeps; answering with this replica\'s');
        },
      );
      this.hydrated.set(agentId, p);
    }
    return p;
  }
}
