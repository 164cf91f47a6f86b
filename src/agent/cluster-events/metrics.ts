/** agentk's metrics of cluster events (on agentk's registry). */
import { Counter, type Registry } from 'prom-client';

export class ClusterEventsAgentMetrics {
  /** Records sent to kas. */
  readonly sent: Counter;
  /**
   * Event occurrences not sent, by reason: rate_limit (over observability.events.rate_limit),
   * queue_full (kas unreachable for long), stream_lost (written to a stream that failed).
   */
  readonly dropped: Counter<'reason'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.sent = new Counter({ name: 'agentk_cluster_events_sent_total', help: 'Cluster event records sent to kas.', registers });
    this.dropped = new Counter({
      name: 'agentk_cluster_events_dropped_total',
      help: 'Cluster events not sent to kas, by reason (rate_limit, queue_full, stream_lost).',
      labelNames: ['reason'],
      registers,
    });
  }
}
