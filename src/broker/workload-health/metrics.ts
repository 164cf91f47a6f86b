/** Metrics of the workload health summaries kas receives and keeps. */
import { Counter, Gauge, type Registry } from 'prom-client';

export class WorkloadHealthMetrics {
  /** Summaries received, by outcome: stored, stale (an older one of the same agentk), refused (bad input). */
  readonly received: Counter<'outcome'>;
  /** Agents whose summary was dropped to keep within max_agents / max_bytes, or after retention. */
  readonly evicted: Counter<'reason'>;
  /** Failed Redis commands (the replica then answers from its own memory). */
  readonly redisErrors: Counter;

  /** `kept` is read at scrape time: agents and bytes kept in memory. */
  constructor(registry: Registry, kept: () => { agents: number; bytes: number }) {
    const registers = [registry];
    this.received = new Counter({ name: 'kas_workload_health_summaries_total', help: 'Workload health summaries received from agents, by outcome.', labelNames: ['outcome'], registers });
    this.evicted = new Counter({ name: 'kas_workload_health_evictions_total', help: 'Agents whose workload health summary was dropped, by reason (max_agents, max_bytes, retention).', labelNames: ['reason'], registers });
    this.redisErrors = new Counter({ name: 'kas_workload_health_redis_errors_total', help: 'Failed Redis commands of the workload health store.', registers });
    const agents: Gauge = new Gauge({ name: 'kas_workload_health_agents', help: 'Agents whose workload health this replica keeps in memory.', registers, collect: (): void => agents.set(kept().agents) });
    const bytes: Gauge = new Gauge({ name: 'kas_workload_health_bytes', help: 'Bytes of workload health summaries this replica keeps in memory.', registers, collect: (): void => bytes.set(kept().bytes) });
  }
}
