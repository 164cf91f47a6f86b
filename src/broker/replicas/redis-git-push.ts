/**
 * Git-push notifications over Redis pub/sub: published once, delivered by every replica's
 * subscription (this one's included). When publishing fails, this replica's own subscribers still
 * get the push.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../shared/logger.js';
import type { RedisKeys } from './redis-keys.js';
import type { GitPushFanOut } from './replica-state.js';

export class RedisGitPush implements GitPushFanOut {
  private readonly listeners = new Set<(projectId: number) => void>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly logger: Logger,
  ) {}

  async publish(projectId: number): Promise<void> {
    try {
      await this.redis.publish(this.keys.channelGitPush, String(projectId));
    } catch (err) {
      this.logger.warn({ err }, 'Redis failed: the git push notification reaches this replica only');
      this.deliver(projectId);
    }
  }

  subscribe(listener: (projectId: number) => void): void {
    this.listeners.add(listener);
  }

  /** A push arrived on the channel. */
  deliver(projectId: number): void {
    for (const l of this.listeners) l(projectId);
  }
}
