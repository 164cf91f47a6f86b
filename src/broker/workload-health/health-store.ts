/**
 * The workload health of agents, as this replica knows it: the latest summary each agent sent (as
 * the checked JSON text), when it arrived, and when the agent was last seen connected. Bounded:
 * at most `maxAgents` agents and `maxBytes` of summaries; past either, the agents least recently
 * heard of go first, disconnected ones before connected ones. A disconnected agent is forgotten
 * `retentionMs` after it was last seen. Single-threaded use only (the event loop).
 */
import type { WorkloadHealthHead } from '../../protocol/workload-health.js';
import type { WorkloadHealthMetrics } from './metrics.js';

export interface HealthRecord {
  /** The summary as JSON text; null when the agent was seen but sent none yet. */
  summary: string | null;
  /** When the summary arrived (ms since the epoch); null with no summary. */
  updatedAt: number | null;
  /** When the agent was last seen connected (ms since the epoch). */
  lastSeen: number;
  /** The agentk process and sequence number the summary came with. */
  instance: string | null;
  seq: number;
}

export interface HealthStoreOptions {
  maxAgents: number;
  maxBytes: number;
  retentionMs: number;
  /** Whether the agent has a session on this replica now. */
  isConnected: (agentId: number) => boolean;
  metrics?: WorkloadHealthMetrics;
}

export type PutOutcome = 'stored' | 'stale';

export class HealthStore {
  /** In order of last write: the first entries are the ones least recently heard of. */
  private readonly entries = new Map<number, HealthRecord>();
  private bytes = 0;

  constructor(private readonly o: HealthStoreOptions) {}

  get agents(): number {
    return this.entries.size;
  }

  get totalBytes(): number {
    return this.bytes;
  }

  /**
   * Keeps a summary of an agent unless an earlier-sent one of the same agentk process is already
   * kept (summaries of one process may arrive out of order over different sessions).
   */
  put(agentId: number, head: WorkloadHealthHead, summary: string, now: number): PutOutcome {
    const old = this.entries.get(agentId);
    if (old && old.instance === head.instance && old.seq > head.seq) return 'stale';
    this.remove(agentId);
    this.insert(agentId, { summary, updatedAt: now, lastSeen: now, instance: head.instance, seq: head.seq });
    this.shrink(agentId);
    return 'stored';
  }

  /** The agent connected or disconnected now: it was seen. */
  seen(agentId: number, now: number): void {
    const old = this.entries.get(agentId);
    this.remove(agentId);
    this.insert(agentId, old ? { ...old, lastSeen: now } : { summary: null, updatedAt: null, lastSeen: now, instance: null, seq: 0 });
    this.shrink(agentId);
  }

  /** What is kept of the agent, or null when nothing is (never seen, evicted or past retention). */
  get(agentId: number, now: number): HealthRecord | null {
    const rec = this.entries.get(agentId);
    if (!rec) return null;
    if (this.expired(agentId, rec, now)) {
      this.remove(agentId);
      this.o.metrics?.evicted.inc({ reason: 'retention' });
      return null;
    }
    return rec;
  }

  /** Forgets the disconnected agents past retention. */
  sweep(now: number): void {
    for (const [agentId, rec] of this.entries) {
      if (this.expired(agentId, rec, now)) {
        this.remove(agentId);
        this.o.metrics?.evicted.inc({ reason: 'retention' });
      }
    }
  }

  private expired(agentId: number, rec: HealthRecord, now: number): boolean {
    return now - rec.lastSeen > this.o.retentionMs && !this.o.isConnected(agentId);
  }

  private insert(agentId: number, rec: HealthRecord): void {
    this.entries.set(agentId, rec);
    this.bytes += rec.summary === null ? 0 : Buffer.byteLength(rec.summary);
  }

  private remove(agentId: number): void {
    const rec = this.entries.get(agentId);
    if (!rec) return;
    this.entries.delete(agentId);
    this.bytes -= rec.summary === null ? 0 : Buffer.byteLength(rec.summary);
  }

  /** Evicts until within both caps, never the agent just written (`keep`). */
  private shrink(keep: number): void {
    while (this.entries.size > this.o.maxAgents || this.bytes > this.o.maxBytes) {
      const victim = this.victim(keep);
      if (victim === null) return;
      this.o.metrics?.evicted.inc({ reason: this.entries.size > this.o.maxAgents ? 'max_agents' : 'max_bytes' });
      this.remove(victim);
    }
  }

  private victim(keep: number): number | null {
    let firstConnected: number | null = null;
    for (const agentId of this.entries.keys()) {
      if (agentId === keep) continue;
      if (!this.o.isConnected(agentId)) return agentId;
      firstConnected ??= agentId;
    }
    return firstConnected;
  }
}
