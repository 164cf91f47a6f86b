/**
 * The per-token connection rate limit of all replicas: a fixed window of one minute counted in
 * Redis. When Redis is unreachable or a command fails the connection is allowed (and the failure
 * counted): a broken limiter must not lock agents out.
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
      // exec() resolves even when a command fails inside the transaction (a key of the wrong type,
      // OOM): each result is [error, value]; it resolves null when the transaction was discarded.
      const results = await this.redis.multi().incr(key).expire(key, 120).exec();
      const incr = results?.[0];
      if (!incr) throw new Error('the Redis transaction was discarded');
      const [incrError, count] = incr;
      if (incrError) throw incrError;
      if (typeof count !== 'number') throw new Error(`INCR answered ${JSON.stringify(count)}, not a number`);
      this.health.ok();
      return count <= limit;
    } catch (err) {
      this.health.failed('rate_limit', err);
      return true;
    }
  }
}
