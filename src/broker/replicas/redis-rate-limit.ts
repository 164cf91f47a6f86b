/**
 * The per-token connection rate limit of all replicas: a fixed window of one minute counted in
 * Redis. When Redis is unreachable the connection is allowed (and the failure counted).
 */
import type { Redis } from 'ioredis';
import type { RedisHealth } from './redis-health.js';
import type { RedisKeys } from './redis-keys.js';
import type { ConnectionRateLimit } from './replica-state.js';

export class RedisConnectionRateLimit implements ConnectionRateLimit {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly health: RedisHealth,
  ) {}

  async allow(tokenDigest: string, limit: number): Promise<boolean> {
    const minute = Math.floor(Date.now() / 60_000);
    const key = this.keys.key('conn_rate', tokenDigest, minute);
    try {
      const [[, count]] = (await this.redis.multi().incr(key).expire(key, 120).exec()) as [[Error | null, number], unknown];
      this.health.ok();
      return count <= limit;
    } catch (err) {
      this.health.failed('rate_limit', err);
      return true;
    }
  }
}
