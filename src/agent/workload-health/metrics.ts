/** Metrics of agentk's workload health reports (on agentk's registry). */
import { Counter, Gauge, type Registry } from 'prom-client';

export class WorkloadHealthMetrics {
  /** Summaries sent to kas, by outcome: ok (kas accepted it), error (not delivered). */
  readonly sent: Counter<'outcome'>;
  /** Problems in the current summary, those left out by the caps included. */
  readonly problems: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.sent = new Counter({ name: 'agentk_workload_health_summaries_total', help: 'Workload health summaries sent to kas, by outcome (ok, error).', labelNames: ['outcome'], registers });
    this.problems = new Gauge({ name: 'agentk_workload_health_problems', help: 'Workload problems in the current summary (left-out ones included).', registers });
  }
}
