/** GitLab's refusals of credentials, shared by every replica for their TTL (a Redis key each). */
import type { Redis } from 'ioredis';
import type { RedisHealth } from './redis-health.js';
import type { RedisKeys } from './redis-keys.js';
import type { RefusalCache } from './replica-state.js';

export class RedisRefusalCache implements RefusalCache {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly health: RedisHealth,
  ) {}

  /** True when some replica recorded GitLab's refusal of this credential recently; false when Redis fails. */
  async refusedRecently(kind: string, digest: string): Promise<boolean> {
    try {
      const hit = await this.redis.exists(this.keys.key('gitlab_refusal', kind, digest));
      this.health.ok();
      return hit === 1;
    } catch (err) {
      this.health.failed('negative_cache', err);
      return false;
    }
  }

  async recordRefusal(kind: string, digest: string, ttlMs: number): Promise<void> {
    try {
      await this.redis.set(this.keys.key('gitlab_refusal', kind, digest), '1', 'PX', ttlMs);
      this.health.ok();
    } catch (err) {
      this.health.failed('negative_cache', err);
    }
  }
}
