/**
 * Cluster events shared by kas replicas through Redis. One Lua script per event takes the next id
 * (one counter for the installation, so ids grow across replicas), prepends the event to the agent's
 * history list (trimmed to the ring size, expiring after redis_ttl) and publishes it on one channel
 * that every replica subscribes to; each replica's ring and watchers are fed from that channel, and
 * a replica that has not seen an agent yet reads the list once (history). When Redis fails, the
 * event still reaches this replica (with a local id) and is counted as dropped{reason="redis"}.
 *
 * Entries (list elements and the message after the agent id) are `<id>\n<lastTimeMs>\n<key>\n<json>`.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../shared/logger.js';
import type { DeliverEvent, EventFanOut, SharedEvent } from './fan-out.js';
import { withId } from './fan-out.js';
import type { ClusterEventsMetrics } from './metrics.js';

const PUBLISH = `
local id = redis.call('INCR', KEYS[1])
local entry = id .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3] .. '\\n{"id":"' .. id .. '",' .. ARGV[4]
redis.call('LPUSH', KEYS[2], entry)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[1] .. '\\n' .. entry)
return id
`;

export interface RedisFanOutOptions {
  redis: Redis;
  subscriber: Redis;
  prefix: string;
  ringSize: number;
  ttlMs: number;
  metrics: ClusterEventsMetrics;
  logger: Logger;
}

function parseEntry(agentId: number, text: string): SharedEvent | null {
  const a = text.indexOf('\n');
  const b = text.indexOf('\n', a + 1);
  const c = text.indexOf('\n', b + 1);
  if (a < 0 || b < 0 || c < 0) return null;
  const id = Number(text.slice(0, a));
  const lastTimeMs = Number(text.slice(a + 1, b));
  if (!Number.isSafeInteger(id) || id <= 0 || !Number.isFinite(lastTimeMs)) return null;
  return { agentId, id, lastTimeMs, key: text.slice(b + 1, c), json: text.slice(c + 1) };
}

export class RedisFanOut implements EventFanOut {
  private deliver: DeliverEvent | null = null;
  /** Ids for events Redis could not take: above every id seen, so this replica's order holds. */
  private localSeq = 0;

  constructor(private readonly o: RedisFanOutOptions) {}

  private get channel(): string {
    return `${this.o.prefix}:cluster_events`;
  }

  private listKey(agentId: number): string {
    return `${this.o.prefix}:cluster_events:${agentId}`;
  }

  publish(agentId: number, key: string, lastTimeMs: number, body: string): void {
    const { redis } = this.o;
    redis
      .eval(PUBLISH, 2, `${this.o.prefix}:cluster_events:seq`, this.listKey(agentId), String(agentId), String(lastTimeMs), key, body.slice(1), String(this.o.ringSize), String(this.o.ttlMs), this.channel)
      .catch((err: unknown) => {
        this.o.metrics.dropped.inc({ reason: 'redis' });
        this.o.logger.warn({ err, agentId }, 'Redis failed: the cluster event reaches this replica only');
        const id = ++this.localSeq;
        this.deliver?.({ agentId, id, key, lastTimeMs, json: withId(id, body) });
      });
  }

  async history(agentId: number): Promise<SharedEvent[]> {
    const entries = await this.o.redis.lrange(this.listKey(agentId), 0, this.o.ringSize - 1);
    const out: SharedEvent[] = [];
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = parseEntry(agentId, entries[i]!);
      if (e) out.push(e);
    }
    return out;
  }

  async start(deliver: DeliverEvent): Promise<void> {
    this.deliver = deliver;
    const { redis, subscriber } = this.o;
    redis.on('error', () => undefined);
    subscriber.on('error', () => undefined);
    subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.channel) return;
      const nl = message.indexOf('\n');
      const agentId = Number(message.slice(0, nl));
      const e = nl > 0 && Number.isSafeInteger(agentId) ? parseEntry(agentId, message.slice(nl + 1)) : null;
      if (!e) return;
      this.localSeq = Math.max(this.localSeq, e.id);
      this.deliver?.(e);
    });
    await Promise.all([redis.connect().catch((err: unknown) => this.o.logger.warn({ err }, 'Redis unreachable: cluster events stay on this replica until it is back')), subscriber.connect().catch(() => undefined)]);
    // ioredis subscribes again by itself after a reconnect.
    await subscriber.subscribe(this.channel).catch((err: unknown) => this.o.logger.warn({ err }, 'could not subscribe to cluster events in Redis'));
  }

  async stop(): Promise<void> {
    this.deliver = null;
    this.o.subscriber.disconnect();
    await this.o.redis.quit().catch(() => this.o.redis.disconnect());
  }
}
