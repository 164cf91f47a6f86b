/**
 * Git-push notifications over Redis pub/sub: published once, delivered by every replica's
 * subscription (this one's included). When publishing fails, this replica's own subscribers still
 * get the push.
 *
 * Two channels: `git_push` carries the bare project id (what every replica version understands;
 * the id subscribers), `git_push_event` carries `{"id", "full_path"}` as JSON (the event
 * subscribers: Flux). Both are published together in one MULTI.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../shared/logger.js';
import type { RedisKeys } from './redis-keys.js';
import type { GitPushEvent, GitPushFanOut } from './replica-state.js';

/** Longest full path accepted from the channel (GitLab's paths are far shorter). */
const MAX_FULL_PATH = 1024;

export class RedisGitPush implements GitPushFanOut {
  private readonly listeners = new Set<(projectId: number) => void>();
  private readonly eventListeners = new Set<(event: GitPushEvent) => void>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly logger: Logger,
  ) {}

  async publish(projectId: number, fullPath?: string | null): Promise<void> {
    const event = JSON.stringify({ id: projectId, full_path: fullPath ?? null });
    try {
      const results = await this.redis.multi().publish(this.keys.channelGitPush, String(projectId)).publish(this.keys.channelGitPushEvent, event).exec();
      const failed = results?.find(([err]) => err !== null);
      if (!results || failed) throw failed?.[0] ?? new Error('the MULTI was discarded');
    } catch (err) {
      this.logger.warn({ err }, 'Redis failed: the git push notification reaches this replica only');
      this.deliver(projectId);
      this.deliverEvent(event);
    }
  }

  subscribe(listener: (projectId: number) => void): void {
    this.listeners.add(listener);
  }

  subscribeEvents(listener: (event: GitPushEvent) => void): void {
    this.eventListeners.add(listener);
  }

  /** A push arrived on the id channel. */
  deliver(projectId: number): void {
    for (const l of this.listeners) l(projectId);
  }

  /** A push arrived on the event channel (JSON, checked here: anyone with Redis access may publish). */
  deliverEvent(message: string): void {
    let value: unknown;
    try {
      value = JSON.parse(message);
    } catch {
      return;
    }
    if (typeof value !== 'object' || value === null) return;
    const { id, full_path: fullPath } = value as { id?: unknown; full_path?: unknown };
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) return;
    if (fullPath !== null && (typeof fullPath !== 'string' || fullPath.length === 0 || fullPath.length > MAX_FULL_PATH)) return;
    const event: GitPushEvent = { projectId: id, fullPath };
    for (const l of this.eventListeners) l(event);
  }
}
