/**
 * What kas replicas share through Redis: which replicas hold which agents (so a request landing on
 * any replica finds a holder), the connections of every agent (so any replica answers the API for
 * GitLab for all), git-push notifications (pub/sub), and the per-token connection rate limit.
 * Every entry expires by itself; a replica refreshes its own while it runs, so a replica that dies
 * leaves nothing behind for long. Redis failures are counted and logged, never fatal: each replica
 * keeps serving the agents it holds, and recovers when Redis comes back. docs/replicas.md lists the keys.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../shared/logger.js';
import { KeyedWaiters } from '../keyed-waiters.js';
import type { KasMetrics } from '../observability/metrics.js';
import type { AgentConnection, AgentRegistry } from '../tunnel/agent-registry.js';

/** One agent connection as the API for GitLab shows it. */
export interface ConnectionRecord {
  agent_id: number;
  project_id: number | null;
  connection_id: string;
  kas_instance: string;
  connected_at: string;
  agent_meta: { version: string; commit: string; pod_namespace: string; pod_name: string; kubernetes_version: string };
}

export function connectionRecord(c: AgentConnection, instance: string): ConnectionRecord {
  return {
    agent_id: c.identity.agentId,
    project_id: c.identity.projectId,
    connection_id: c.connectionId,
    kas_instance: instance,
    connected_at: c.connectedAt.toISOString(),
    agent_meta: { version: c.meta.version, commit: c.meta.commit, pod_namespace: c.meta.podNamespace, pod_name: c.meta.podName, kubernetes_version: c.meta.kubernetesVersion },
  };
}

export interface SharedStateOptions {
  redis: Redis;
  /** A second connection, for pub/sub (a subscribed connection can do nothing else). */
  subscriber: Redis;
  prefix: string;
  /** How other replicas reach this one's private API (ws://host:port). */
  ownUrl: string;
  instanceName: string;
  ttlMs: number;
  refreshMs: number;
  registry: AgentRegistry;
  logger: Logger;
  metrics: KasMetrics;
  /** Delay before a disconnected agent's entry is removed, absorbing an immediate reconnect. */
  unregisterDelayMs?: number;
}

const MAX_LIST = 10_000;

export class RedisSharedState {
  private readonly o: SharedStateOptions;
  private readonly waiters = new KeyedWaiters<number, true>();
  private readonly gitPushListeners = new Set<(projectId: number) => void>();
  private readonly pendingRemovals = new Map<number, NodeJS.Timeout>();
  private refreshTimer: NodeJS.Timeout | null = null;
  private stopChange: (() => void) | null = null;
  /** The agents whose entries this replica wrote, with their project, so they can be removed. */
  private readonly published = new Map<number, number | null>();
  private healthy = false;
  private withdrawn = false;

  constructor(options: SharedStateOptions) {
    this.o = options;
  }

  private key(...parts: Array<string | number>): string {
    return [this.o.prefix, ...parts].join(':');
  }

  get channelRegistered(): string {
    return this.key('tunnel_registered');
  }

  get channelGitPush(): string {
    return this.key('git_push');
  }

  /** Sets how other replicas reach this one, once the private API is listening (before start). */
  setOwnUrl(url: string): void {
    this.o.ownUrl = url;
  }

  /** True while the last Redis command succeeded. */
  get redisHealthy(): boolean {
    return this.healthy;
  }

  private failed(op: string, err: unknown): void {
    if (this.healthy) this.o.logger.warn({ err, op }, 'Redis is unreachable: serving this replica\'s agents only until it is back');
    this.healthy = false;
    this.o.metrics.redisErrors.inc({ op });
  }

  private ok(): void {
    if (!this.healthy) this.o.logger.info('Redis is reachable');
    this.healthy = true;
  }

  async start(): Promise<void> {
    const { redis, subscriber } = this.o;
    redis.on('error', () => undefined);
    subscriber.on('error', () => undefined);
    subscriber.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    // Subscriptions are restored by ioredis after a reconnect; entries are rewritten at the next refresh.
    redis.on('ready', () => void this.refreshAll());
    await Promise.all([redis.connect().catch((err: unknown) => this.failed('connect', err)), subscriber.connect().catch(() => undefined)]);
    await subscriber.subscribe(this.channelRegistered, this.channelGitPush).catch((err: unknown) => this.failed('subscribe', err));
    this.stopChange = this.o.registry.onChange((agentId) => this.onLocalChange(agentId));
    this.refreshTimer = setInterval(() => void this.refreshAll(), this.o.refreshMs);
    this.refreshTimer.unref();
    await this.refreshAll();
  }

  /**
   * Takes this replica out of routing (shutdown): removes its entries at once and writes no more,
   * so other replicas stop sending it requests while its agents reconnect elsewhere.
   */
  async withdraw(): Promise<void> {
    this.withdrawn = true;
    this.stopChange?.();
    this.stopChange = null;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = null;
    await Promise.all([...this.published.keys()].map((id) => this.remove(id)));
  }

  async stop(): Promise<void> {
    this.withdrawn = true;
    this.stopChange?.();
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    for (const t of this.pendingRemovals.values()) clearTimeout(t);
    this.pendingRemovals.clear();
    await Promise.all([...this.published.keys()].map((id) => this.remove(id)));
    this.o.subscriber.disconnect();
    await this.o.redis.quit().catch(() => this.o.redis.disconnect());
  }

  // ---- this replica's agents -----------------------------------------------------------------

  private onLocalChange(agentId: number): void {
    const pending = this.pendingRemovals.get(agentId);
    if (pending) {
      clearTimeout(pending);
      this.pendingRemovals.delete(agentId);
    }
    if (this.o.registry.connections(agentId).length > 0) {
      void this.publish(agentId, true);
      return;
    }
    const t = setTimeout(() => {
      this.pendingRemovals.delete(agentId);
      if (this.o.registry.connections(agentId).length === 0) void this.remove(agentId);
    }, this.o.unregisterDelayMs ?? 1000);
    t.unref();
    this.pendingRemovals.set(agentId, t);
  }

  /** Writes (or refreshes) the holder entry and connection records of one local agent. */
  private async publish(agentId: number, announce: boolean): Promise<void> {
    const conns = this.o.registry.connections(agentId);
    if (conns.length === 0 || this.withdrawn) return;
    const expires = Date.now() + this.o.ttlMs;
    const projectId = conns[0]!.identity.projectId;
    const records: Record<string, string> = {};
    for (const c of conns) records[c.connectionId] = JSON.stringify({ ...connectionRecord(c, this.o.instanceName), expires });
    const m = this.o.redis.multi();
    m.hset(this.key('agent_tunnels', agentId), this.o.ownUrl, String(expires));
    m.pexpire(this.key('agent_tunnels', agentId), this.o.ttlMs);
    // Records of connections that closed since the last write are replaced wholesale for this instance.
    const connKey = this.key('agent_conns', agentId);
    m.hset(connKey, records);
    m.pexpire(connKey, this.o.ttlMs);
    if (projectId !== null) {
      m.hset(this.key('project_agents', projectId), String(agentId), String(expires));
      m.pexpire(this.key('project_agents', projectId), this.o.ttlMs);
    }
    if (announce) m.publish(this.channelRegistered, String(agentId));
    try {
      await m.exec();
      this.published.set(agentId, projectId);
      await this.pruneConnections(agentId, new Set(Object.keys(records)));
      this.ok();
    } catch (err) {
      this.failed('publish', err);
    }
  }

  /** Removes this instance's records of connections that are gone. */
  private async pruneConnections(agentId: number, live: Set<string>): Promise<void> {
    const all = await this.o.redis.hgetall(this.key('agent_conns', agentId));
    const stale = Object.entries(all)
      .filter(([id, json]) => !live.has(id) && parseRecord(json)?.kas_instance === this.o.instanceName)
      .map(([id]) => id);
    if (stale.length > 0) await this.o.redis.hdel(this.key('agent_conns', agentId), ...stale);
  }

  private async remove(agentId: number): Promise<void> {
    const projectId = this.published.get(agentId);
    this.published.delete(agentId);
    try {
      await this.o.redis.hdel(this.key('agent_tunnels', agentId), this.o.ownUrl);
      await this.pruneConnections(agentId, new Set());
      if (projectId !== null && projectId !== undefined) {
        const holders = await this.o.redis.hlen(this.key('agent_tunnels', agentId));
        if (holders === 0) await this.o.redis.hdel(this.key('project_agents', projectId), String(agentId));
      }
      this.ok();
    } catch (err) {
      this.failed('remove', err);
    }
  }

  private async refreshAll(): Promise<void> {
    const ids = new Set(this.o.registry.connections().map((c) => c.identity.agentId));
    await Promise.all([...ids].map((id) => this.publish(id, false)));
    if (ids.size === 0) {
      try {
        await this.o.redis.ping();
        this.ok();
      } catch (err) {
        this.failed('ping', err);
      }
    }
  }

  // ---- other replicas ------------------------------------------------------------------------

  /** Private API URLs of the other replicas that hold the agent now ([] when Redis is unreachable). */
  async holders(agentId: number): Promise<string[]> {
    try {
      const key = this.key('agent_tunnels', agentId);
      const all = await this.o.redis.hgetall(key);
      this.ok();
      const now = Date.now();
      // A replica that died cannot remove its own entry: whoever reads it past its expiry does.
      const expired = Object.entries(all).filter(([, expires]) => Number(expires) <= now).map(([url]) => url);
      if (expired.length > 0) void this.o.redis.hdel(key, ...expired).catch((err: unknown) => this.failed('prune', err));
      return Object.entries(all)
        .filter(([url, expires]) => url !== this.o.ownUrl && Number(expires) > now)
        .map(([url]) => url);
    } catch (err) {
      this.failed('holders', err);
      return [];
    }
  }

  /** Resolves when some replica announces the agent, or after timeoutMs, or on abort. */
  async waitRegistered(agentId: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    await this.waiters.wait(agentId, timeoutMs, signal);
  }

  private onMessage(channel: string, message: string): void {
    if (!/^\d{1,18}$/.test(message)) return;
    const id = Number(message);
    if (channel === this.channelRegistered) {
      this.waiters.offer(id, () => true);
    } else if (channel === this.channelGitPush) {
      for (const l of this.gitPushListeners) l(id);
    }
  }

  /** The connections of agents (by agent ids or by their configuration projects), on every replica. */
  async connections(agentIds: number[], projectIds: number[]): Promise<ConnectionRecord[]> {
    const now = Date.now();
    const ids = new Set(agentIds);
    for (const pid of projectIds) {
      const agents = await this.o.redis.hgetall(this.key('project_agents', pid));
      for (const [aid, expires] of Object.entries(agents)) if (Number(expires) > now && /^\d+$/.test(aid)) ids.add(Number(aid));
    }
    const out: ConnectionRecord[] = [];
    for (const id of [...ids].slice(0, MAX_LIST)) {
      const conns = await this.o.redis.hgetall(this.key('agent_conns', id));
      for (const json of Object.values(conns)) {
        const r = parseRecord(json);
        if (r && r.expires > now) {
          const { expires: _expires, ...record } = r;
          out.push(record);
        }
      }
    }
    return out;
  }

  // ---- shared negative caches of GitLab answers -----------------------------------------------

  /** True when some replica recorded GitLab's refusal of this credential (by its digest) recently. */
  async refusedRecently(kind: string, digest: string): Promise<boolean> {
    try {
      const hit = await this.o.redis.exists(this.key('gitlab_refusal', kind, digest));
      this.ok();
      return hit === 1;
    } catch (err) {
      this.failed('negative_cache', err);
      return false;
    }
  }

  /** Records GitLab's refusal of a credential for every replica, for ttlMs. */
  async recordRefusal(kind: string, digest: string, ttlMs: number): Promise<void> {
    try {
      await this.o.redis.set(this.key('gitlab_refusal', kind, digest), '1', 'PX', ttlMs);
      this.ok();
    } catch (err) {
      this.failed('negative_cache', err);
    }
  }

  // ---- git push fan-out and rate limits ------------------------------------------------------

  async publishGitPush(projectId: number): Promise<void> {
    await this.o.redis.publish(this.channelGitPush, String(projectId));
  }

  onGitPush(listener: (projectId: number) => void): void {
    this.gitPushListeners.add(listener);
  }

  /**
   * Counts a new connection for a token (by its digest) in a fixed window of one minute; false when
   * over the limit. When Redis is unreachable the connection is allowed (and the failure counted).
   */
  async connectionAllowed(tokenDigest: string, limit: number): Promise<boolean> {
    const minute = Math.floor(Date.now() / 60_000);
    const key = this.key('conn_rate', tokenDigest, minute);
    try {
      const [[, count]] = (await this.o.redis.multi().incr(key).expire(key, 120).exec()) as [[Error | null, number], unknown];
      this.ok();
      return count <= limit;
    } catch (err) {
      this.failed('rate_limit', err);
      return true;
    }
  }
}

function parseRecord(json: string): (ConnectionRecord & { expires: number }) | null {
  try {
    const v = JSON.parse(json) as ConnectionRecord & { expires: number };
    return typeof v === 'object' && v !== null && typeof v.expires === 'number' ? v : null;
  } catch {
    return null;
  }
}
