/** Metrics of the state replicas share. */
import { Counter, type Registry } from 'prom-client';

export class ReplicaMetrics {
  readonly redisErrors: Counter<'op'>;

  constructor(registry: Registry) {
    this.redisErrors = new Counter({ name: 'kas_redis_errors_total', help: 'Failed Redis operations by operation (kas keeps serving its own agents meanwhile).', labelNames: ['op'], registers: [registry] });
  }
}
