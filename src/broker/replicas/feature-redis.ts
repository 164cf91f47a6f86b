/**
 * A feature's own Redis connection (made from the `redis` section) for state every replica must
 * answer from, such as the latest workload health or GitOps apply results of an agent. Commands
 * that fail are counted and logged once per outage (and once when Redis answers again); they
 * resolve to undefined so that the feature falls back to what this replica keeps in memory.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../shared/logger.js';
import { createRedis, type RedisConfig } from './redis-client.js';
import { RedisKeys } from './redis-keys.js';

export interface FeatureRedisOptions {
  logger: Logger;
  /** What the feature is called in logs, e.g. "workload health". */
  what: string;
  /** Called for each failed command (a metrics counter). */
  onError: () => void;
}

export class FeatureRedis {
  readonly keys: RedisKeys;
  private failing = false;

  constructor(
    readonly redis: Redis,
    keyPrefix: string,
    private readonly o: FeatureRedisOptions,
  ) {
    this.keys = new RedisKeys(keyPrefix);
  }

  /** A connection of its own when the `redis` section is configured; null for a single replica. */
  static fromConfig(cfg: RedisConfig | undefined, o: FeatureRedisOptions): FeatureRedis | null {
    return cfg ? new FeatureRedis(createRedis(cfg), cfg.key_prefix, o) : null;
  }

  /** Connects; an unreachable Redis is logged, not fatal (commands fail fast until it answers). */
  async connect(): Promise<void> {
    await this.redis.connect().catch((err: unknown) => this.o.logger.warn({ err }, `Redis is unreachable: ${this.o.what} is kept in memory until it answers`));
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /** Runs commands; undefined when Redis failed (counted, and logged once per outage). */
  async run<T>(command: (redis: Redis) => Promise<T>): Promise<T | undefined> {
    try {
      const out = await command(this.redis);
      if (this.failing) this.o.logger.info(`Redis answers again: ${this.o.what} is shared with the other replicas`);
      this.failing = false;
      return out;
    } catch (err) {
      this.o.onError();
      if (!this.failing) this.o.logger.warn({ err }, `Redis failed: ${this.o.what} is answered from this replica's memory until it is back`);
      this.failing = true;
      return undefined;
    }
  }
}
