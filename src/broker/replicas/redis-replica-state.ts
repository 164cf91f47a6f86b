/**
 * What kas replicas share through Redis (docs/replicas.md lists the keys): presence and connection
 * records, git-push fan-out, GitLab refusals, the connection rate limit. Redis failures are counted
 * and logged, never fatal: each replica keeps serving the agents it holds, and recovers when Redis
 * comes back. Two connections: commands, and a subscriber (a subscribed connection can do nothing else).
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../shared/logger.js';
import type { AgentRegistry } from '../tunnel/agent-registry.js';
import type { ReplicaMetrics } from './metrics.js';
import { RedisGitPush } from './redis-git-push.js';
import { RedisHealth } from './redis-health.js';
import { RedisKeys } from './redis-keys.js';
import { RedisPresence } from './redis-presence.js';
import { RedisConnectionRateLimit } from './redis-rate-limit.js';
import { RedisRefusalCache } from './redis-refusal-cache.js';
import type { ReplicaState } from './replica-state.js';

export interface RedisReplicaStateOptions {
  redis: Redis;
  subscriber: Redis;
  prefix: string;
  instanceName: string;
  ttlMs: number;
  refreshMs: number;
  registry: AgentRegistry;
  logger: Logger;
  metrics: ReplicaMetrics;
  /** Delay before a disconnected agent's entry is removed, absorbing an immediate reconnect. */
  unregisterDelayMs?: number;
}

export class RedisReplicaState implements ReplicaState {
  readonly presence: RedisPresence;
  readonly records: RedisPresence;
  readonly gitPush: RedisGitPush;
  readonly refusals: RedisRefusalCache;
  readonly rateLimit: RedisConnectionRateLimit;
  private readonly keys: RedisKeys;
  private readonly health: RedisHealth;

  constructor(private readonly o: RedisReplicaStateOptions) {
    this.keys = new RedisKeys(o.prefix);
    this.health = new RedisHealth(o.logger, o.metrics);
    this.presence = new RedisPresence({ ...o, keys: this.keys, health: this.health });
    this.records = this.presence;
    this.gitPush = new RedisGitPush(o.redis, this.keys, o.logger);
    this.refusals = new RedisRefusalCache(o.redis, this.keys, this.health);
    this.rateLimit = new RedisConnectionRateLimit(o.redis, this.keys, this.health);
  }

  get healthy(): boolean {
    return this.health.healthy;
  }

  async start(ownUrl: string): Promise<void> {
    const { redis, subscriber } = this.o;
    redis.on('error', () => undefined);
    subscriber.on('error', () => undefined);
    subscriber.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    // Subscriptions are restored by ioredis after a reconnect; entries are rewritten at the next refresh.
    redis.on('ready', () => void this.presence.refreshAll());
    await Promise.all([redis.connect().catch((err: unknown) => this.health.failed('connect', err)), subscriber.connect().catch(() => undefined)]);
    await subscriber.subscribe(this.keys.channelRegistered, this.keys.channelGitPush, this.keys.channelGitPushEvent).catch((err: unknown) => this.health.failed('subscribe', err));
    await this.presence.start(ownUrl);
  }

  withdraw(): Promise<void> {
    return this.presence.withdraw();
  }

  async stop(): Promise<void> {
    await this.presence.stop();
    this.o.subscriber.disconnect();
    await this.o.redis.quit().catch(() => this.o.redis.disconnect());
  }

  private onMessage(channel: string, message: string): void {
    if (channel === this.keys.channelGitPushEvent) {
      this.gitPush.deliverEvent(message);
      return;
    }
    if (!/^\d{1,18}$/.test(message)) return;
    const id = Number(message);
    if (channel === this.keys.channelRegistered) this.presence.announced(id);
    else if (channel === this.keys.channelGitPush) this.gitPush.deliver(id);
  }
}
