/**
 * kas's half of workload health: receives the summaries agents send on `workload_health` streams,
 * keeps the latest per agent (memory, and Redis when there are replicas) with when it arrived and
 * when the agent was last seen, and answers what the API shows for an agent.
 */
import type { TunnelStream } from '../../protocol/stream.js';
import { TunnelError } from '../../protocol/errors.js';
import {
  MAX_WORKLOAD_HEALTH_BYTES,
  decodeWorkloadHealthData,
  decodeWorkloadHealthHead,
  encodeWorkloadHealthReply,
  type NamespaceHealth,
  type WorkloadHealthSummary,
} from '../../protocol/workload-health.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentPresence } from '../replicas/replica-state.js';
import type { AgentConnection, AgentRegistry } from '../tunnel/agent-registry.js';
import type { HealthRecord, HealthStore } from './health-store.js';
import type { WorkloadHealthMetrics } from './metrics.js';
import type { RedisHealthMirror } from './redis-health-mirror.js';

/** How long agentk may take to send a summary once it opened the stream. */
export const RECEIVE_TIMEOUT_MS = 30_000;
/**
 * Summaries one connection may be sending at once (agentk sends one at a time, plus the one for a
 * new session): with MAX_WORKLOAD_HEALTH_BYTES each, what a connection can make kas buffer.
 */
export const MAX_STREAMS_PER_CONNECTION = 4;

/** What `GET /api/v1/agents/{agent_id}/health` answers. */
export interface AgentHealthView {
  agent_id: number;
  connected: boolean;
  /** When the agent was last connected (now, while it is); RFC 3339. */
  last_seen: string;
  /** When the summary arrived; null when the agent sent none yet. */
  updated_at: string | null;
  namespaces: NamespaceHealth[];
  omitted_namespaces: number;
  omitted_problems: number;
}

export interface WorkloadHealthDeps {
  store: HealthStore;
  /** null for a single replica. */
  mirror: RedisHealthMirror | null;
  registry: AgentRegistry;
  presence: AgentPresence;
  metrics: WorkloadHealthMetrics;
  now?: () => number;
  /** How long agentk may take to send a summary once it opened the stream, ms (default RECEIVE_TIMEOUT_MS). */
  receiveTimeoutMs?: number;
}

export class WorkloadHealth {
  private readonly now: () => number;
  private stopWatching: (() => void) | null = null;
  /** Writes to Redis in flight, awaited on stop. */
  private readonly pending = new Set<Promise<void>>();
  /** Streams being received, per connection. */
  private readonly receiving = new WeakMap<AgentConnection, number>();

  constructor(private readonly d: WorkloadHealthDeps) {
    this.now = d.now ?? Date.now;
  }

  /** Follows agents connecting and disconnecting on this replica: each is a sighting. */
  start(): void {
    this.stopWatching = this.d.registry.onChange((agentId) => {
      const now = this.now();
      this.d.store.seen(agentId, now);
      if (this.d.mirror) this.track(this.d.mirror.seen(agentId, now));
    });
  }

  async stop(): Promise<void> {
    this.stopWatching?.();
    this.stopWatching = null;
    await Promise.all([...this.pending]);
  }

  sweep(): void {
    this.d.store.sweep(this.now());
  }

  /** Serves one `workload_health` stream (an AGENT_STREAMS handler). */
  receive(stream: TunnelStream, connection: AgentConnection, logger: Logger): void {
    const agentId = connection.identity.agentId;
    const open = this.receiving.get(connection) ?? 0;
    if (open >= MAX_STREAMS_PER_CONNECTION) {
      this.d.metrics.received.inc({ outcome: 'refused' });
      logger.warn({ agentId, streamId: stream.id }, 'workload health summary refused: too many at once on one connection');
      stream.reset('STREAM_LIMIT', `at most ${MAX_STREAMS_PER_CONNECTION} workload health streams at once per connection`);
      return;
    }
    this.receiving.set(connection, open + 1);
    stream.once('close', () => this.receiving.set(connection, (this.receiving.get(connection) ?? 1) - 1));
    const refuse = (err: unknown) => {
      this.d.metrics.received.inc({ outcome: 'refused' });
      const message = err instanceof TunnelError ? err.message : 'invalid workload health summary';
      logger.warn({ agentId, streamId: stream.id, reason: message }, 'workload health summary refused');
      clearTimeout(timer);
      stream.reset('PROTOCOL_ERROR', message);
    };
    const timeoutMs = this.d.receiveTimeoutMs ?? RECEIVE_TIMEOUT_MS;
    const timer = setTimeout(() => refuse(new TunnelError('PROTOCOL_ERROR', `invalid workload health message: no summary within ${timeoutMs / 1000} s`)), timeoutMs);
    timer.unref();
    let head: ReturnType<typeof decodeWorkloadHealthHead>;
    try {
      head = decodeWorkloadHealthHead(stream.peerHead ?? {});
    } catch (err) {
      refuse(err);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      if (stream.destroyed) return;
      size += chunk.length;
      if (size > MAX_WORKLOAD_HEALTH_BYTES) {
        chunks.length = 0;
        refuse(new TunnelError('PROTOCOL_ERROR', `invalid workload health message: the summary exceeds ${MAX_WORKLOAD_HEALTH_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    stream.on('close', () => clearTimeout(timer));
    stream.on('end', () => {
      if (stream.destroyed) return;
      clearTimeout(timer);
      let summary: WorkloadHealthSummary;
      try {
        summary = decodeWorkloadHealthData(Buffer.concat(chunks, size));
      } catch (err) {
        refuse(err);
        return;
      }
      const now = this.now();
      const json = JSON.stringify(summary);
      const outcome = this.d.store.put(agentId, head, json, now);
      this.d.metrics.received.inc({ outcome });
      if (outcome === 'stored' && this.d.mirror) {
        this.track(this.d.mirror.put(agentId, { summary: json, updatedAt: now, lastSeen: now, instance: head.instance, seq: head.seq }));
      }
      logger.debug({ agentId, streamId: stream.id, seq: head.seq, outcome, namespaces: summary.namespaces.length }, 'workload health summary received');
      stream.reply(encodeWorkloadHealthReply(), { end: true });
    });
  }

  /** What the API shows for an agent; null when it was never seen (or is forgotten). */
  async view(agentId: number): Promise<AgentHealthView | null> {
    const now = this.now();
    const local = this.d.store.get(agentId, now);
    const [shared, holders] = await Promise.all([this.d.mirror ? this.d.mirror.get(agentId) : Promise.resolve(null), this.d.presence.holders(agentId)]);
    const connected = this.d.registry.connections(agentId).length > 0 || holders.length > 0;
    const rec = newest(local, shared ?? null);
    if (!rec && !connected) return null;
    const summary = rec?.summary ? (JSON.parse(rec.summary) as WorkloadHealthSummary) : null;
    const lastSeen = connected ? now : rec!.lastSeen;
    return {
      agent_id: agentId,
      connected,
      last_seen: new Date(lastSeen).toISOString(),
      updated_at: rec?.updatedAt != null ? new Date(rec.updatedAt).toISOString() : null,
      namespaces: summary?.namespaces ?? [],
      omitted_namespaces: summary?.omitted_namespaces ?? 0,
      omitted_problems: summary?.omitted_problems ?? 0,
    };
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }
}

/** The record with the later summary, and the later sighting of the two. */
function newest(a: HealthRecord | null, b: HealthRecord | null): HealthRecord | null {
  if (!a || !b) return a ?? b;
  const base = (b.updatedAt ?? -1) > (a.updatedAt ?? -1) ? b : a;
  return { ...base, lastSeen: Math.max(a.lastSeen, b.lastSeen) };
}
