/**
 * Whether the last Redis command succeeded, shared by every Redis-backed concern of a replica:
 * failures are counted by operation and logged once per outage, never thrown at callers.
 */
import type { Logger } from '../../shared/logger.js';
import type { ReplicaMetrics } from './metrics.js';

export class RedisHealth {
  private state = false;

  constructor(
    private readonly logger: Logger,
    private readonly metrics: ReplicaMetrics,
  ) {}

  get healthy(): boolean {
    return this.state;
  }

  failed(op: string, err: unknown): void {
    if (this.state) this.logger.warn({ err, op }, 'Redis is unreachable: serving this replica\'s agents only until it is back');
    this.state = false;
    this.metrics.redisErrors.inc({ op });
  }

  ok(): void {
    if (!this.state) this.logger.info('Redis is reachable');
    this.state = true;
  }
}
