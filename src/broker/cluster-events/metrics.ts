/** Metrics of the cluster events kas keeps and serves. */
import { Counter, Gauge, type Registry } from 'prom-client';

export interface StoreUsage {
  events: number;
  bytes: number;
  agents: number;
}

export class ClusterEventsMetrics {
  /** Events received, by source (kubernetes: from agentk; kas; gitops). */
  readonly received: Counter<'source'>;
  /**
   * Events not kept or not delivered, by reason: invalid (a stream reset for a bad record), rate_limit
   * (over an agent's rate at kas), merged (replaced by a newer repeat), ring_full, memory_budget,
   * redis (could not be shared with other replicas).
   */
  readonly dropped: Counter<'reason'>;
  /** Watch requests open now. */
  readonly watchers: Gauge;
  /** Watch requests ended by kas, by reason: slow (the client did not keep up), limit, shutdown. */
  readonly watchersCut: Counter<'reason'>;
  private usage: () => StoreUsage = () => ({ events: 0, bytes: 0, agents: 0 });

  constructor(registry: Registry) {
    const registers = [registry];
    this.received = new Counter({ name: 'kas_cluster_events_received_total', help: 'Cluster events received, by source (kubernetes, kas, gitops).', labelNames: ['source'], registers });
    this.dropped = new Counter({
      name: 'kas_cluster_events_dropped_total',
      help: 'Cluster events not kept, by reason (invalid, rate_limit, merged, ring_full, memory_budget, redis).',
      labelNames: ['reason'],
      registers,
    });
    this.watchers = new Gauge({ name: 'kas_cluster_events_watchers', help: 'Open watch requests of cluster events.', registers });
    this.watchersCut = new Counter({ name: 'kas_cluster_events_watchers_cut_total', help: 'Watch requests ended by kas, by reason (slow, shutdown).', labelNames: ['reason'], registers });
    const stored: Gauge = new Gauge({ name: 'kas_cluster_events_stored', help: 'Cluster events kept in memory, all agents.', registers, collect: () => stored.set(this.usage().events) });
    const bytes: Gauge = new Gauge({ name: 'kas_cluster_events_stored_bytes', help: 'Bytes counted against agent.events.max_memory.', registers, collect: () => bytes.set(this.usage().bytes) });
    const agents: Gauge = new Gauge({ name: 'kas_cluster_events_agents', help: 'Agents with cluster events kept in memory.', registers, collect: () => agents.set(this.usage().agents) });
  }

  /** The store reports its usage at scrape time. */
  observe(usage: () => StoreUsage): void {
    this.usage = usage;
  }
}
