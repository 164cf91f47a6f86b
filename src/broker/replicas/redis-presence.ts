/**
 * Presence and connection records in Redis: which replicas hold which agents (so a request landing
 * on any replica finds a holder) and every agent connection (so any replica answers the API for
 * GitLab for all). Both are written together, in one transaction per agent. Every entry expires by
 * itself; a replica refreshes its own while it runs, so a replica that dies leaves nothing behind for
 * long, and readers prune holder entries past their expiry.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../../shared/logger.js';
import { KeyedWaiters } from '../keyed-waiters.js';
import type { AgentRegistry } from '../tunnel/agent-registry.js';
import { connectionRecord, localConnections, type ConnectionRecord } from './connection-record.js';
import type { RedisHealth } from './redis-health.js';
import type { RedisKeys } from './redis-keys.js';
import type { AgentPresence, ConnectionRecords } from './replica-state.js';

export interface RedisPresenceOptions {
  redis: Redis;
  keys: RedisKeys;
  health: RedisHealth;
  registry: AgentRegistry;
  instanceName: string;
  ttlMs: number;
  refreshMs: number;
  logger: Logger;
  /** Delay before a disconnected agent's entry is removed, absorbing an immediate reconnect. */
  unregisterDelayMs?: number;
}

const MAX_LIST = 10_000;

export class RedisPresence implements AgentPresence, ConnectionRecords {
  private readonly waiters = new KeyedWaiters<number, true>();
  private readonly pendingRemovals = new Map<number, NodeJS.Timeout>();
  private refreshTimer: NodeJS.Timeout | null = null;
  private stopChange: (() => void) | null = null;
  /** The agents whose entries this replica wrote, with their project, so they can be removed. */
  private readonly published = new Map<number, number | null>();
  private withdrawn = false;
  private ownUrl = '';

  constructor(private readonly o: RedisPresenceOptions) {}

  async start(ownUrl: string): Promise<void> {
    this.ownUrl = ownUrl;
    this.stopChange = this.o.registry.onChange((agentId) => this.onLocalChange(agentId));
    this.refreshTimer = setInterval(() => void this.refreshAll(), this.o.refreshMs);
    this.refreshTimer.unref();
    await this.refreshAll();
  }

  async withdraw(): Promise<void> {
    this.withdrawn = true;
    this.stopChange?.();
    this.stopChange = null;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = null;
    await Promise.all([...this.published.keys()].map((id) => this.remove(id)));
  }

  async stop(): Promise<void> {
    await this.withdraw();
    for (const t of this.pendingRemovals.values()) clearTimeout(t);
    this.pendingRemovals.clear();
  }

  /** Another replica announced an agent. */
  announced(agentId: number): void {
    this.waiters.offer(agentId, () => true);
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

  /** A local connection's record changed (registration): written now rather than at the next refresh. */
  async changed(agentId: number): Promise<void> {
    if (this.o.registry.connections(agentId).length > 0) await this.publish(agentId, false);
  }

  /** Writes (or refreshes) the holder entry and connection records of one local agent. */
  private async publish(agentId: number, announce: boolean): Promise<void> {
    const conns = this.o.registry.connections(agentId);
    if (conns.length === 0 || this.withdrawn) return;
    const { keys, ttlMs } = this.o;
    const expires = Date.now() + ttlMs;
    const projectId = conns[0]!.identity.projectId;
    const records: Record<string, string> = {};
    for (const c of conns) records[c.connectionId] = JSON.stringify({ ...connectionRecord(c, this.o.instanceName), expires });
    const m = this.o.redis.multi();
    m.hset(keys.key('agent_tunnels', agentId), this.ownUrl, String(expires));
    m.pexpire(keys.key('agent_tunnels', agentId), ttlMs);
    // Records of connections that closed since the last write are replaced wholesale for this instance.
    const connKey = keys.key('agent_conns', agentId);
    m.hset(connKey, records);
    m.pexpire(connKey, ttlMs);
    if (projectId !== null) {
      m.hset(keys.key('project_agents', projectId), String(agentId), String(expires));
      m.pexpire(keys.key('project_agents', projectId), ttlMs);
    }
    if (announce) m.publish(keys.channelRegistered, String(agentId));
    try {
      await m.exec();
      this.published.set(agentId, projectId);
      await this.pruneConnections(agentId, new Set(Object.keys(records)));
      this.o.health.ok();
    } catch (err) {
      this.o.health.failed('publish', err);
    }
  }

  /** Removes this instance's records of connections that are gone. */
  private async pruneConnections(agentId: number, live: Set<string>): Promise<void> {
    const key = this.o.keys.key('agent_conns', agentId);
    const all = await this.o.redis.hgetall(key);
    const stale = Object.entries(all)
      .filter(([id, json]) => !live.has(id) && parseRecord(json)?.kas_instance === this.o.instanceName)
      .map(([id]) => id);
    if (stale.length > 0) await this.o.redis.hdel(key, ...stale);
  }

  private async remove(agentId: number): Promise<void> {
    const projectId = this.published.get(agentId);
    this.published.delete(agentId);
    const { keys, redis } = this.o;
    try {
      await redis.hdel(keys.key('agent_tunnels', agentId), this.ownUrl);
      await this.pruneConnections(agentId, new Set());
      if (projectId !== null && projectId !== undefined) {
        const holders = await redis.hlen(keys.key('agent_tunnels', agentId));
        if (holders === 0) await redis.hdel(keys.key('project_agents', projectId), String(agentId));
      }
      this.o.health.ok();
    } catch (err) {
      this.o.health.failed('remove', err);
    }
  }

  /** Rewrites every local agent's entries (periodically, and when Redis is back). */
  async refreshAll(): Promise<void> {
    const ids = new Set(this.o.registry.connections().map((c) => c.identity.agentId));
    await Promise.all([...ids].map((id) => this.publish(id, false)));
    if (ids.size === 0) {
      try {
        await this.o.redis.ping();
        this.o.health.ok();
      } catch (err) {
        this.o.health.failed('ping', err);
      }
    }
  }

  // ---- other replicas ------------------------------------------------------------------------

  async holders(agentId: number): Promise<string[]> {
    try {
      const key = this.o.keys.key('agent_tunnels', agentId);
      const all = await this.o.redis.hgetall(key);
      this.o.health.ok();
      const now = Date.now();
      // A replica that died cannot remove its own entry: whoever reads it past its expiry does.
      const expired = Object.entries(all)
        .filter(([, expires]) => Number(expires) <= now)
        .map(([url]) => url);
      if (expired.length > 0) void this.o.redis.hdel(key, ...expired).catch((err: unknown) => this.o.health.failed('prune', err));
      return Object.entries(all)
        .filter(([url, expires]) => url !== this.ownUrl && Number(expires) > now)
        .map(([url]) => url);
    } catch (err) {
      this.o.health.failed('holders', err);
      return [];
    }
  }

  async waitRegistered(agentId: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    await this.waiters.wait(agentId, timeoutMs, signal);
  }

  /** Every replica's connections while Redis answers; this replica's own when it does not. */
  async connections(agentIds: number[], projectIds: number[]): Promise<ConnectionRecord[]> {
    if (this.o.health.healthy) {
      try {
        return await this.sharedConnections(agentIds, projectIds);
      } catch (err) {
        this.o.logger.warn({ err }, 'Redis failed: answering connected_agents for this replica only');
      }
    }
    return localConnections(this.o.registry, this.o.instanceName, agentIds, projectIds);
  }

  private async sharedConnections(agentIds: number[], projectIds: number[]): Promise<ConnectionRecord[]> {
    const { keys, redis } = this.o;
    const now = Date.now();
    const ids = new Set(agentIds);
    for (const pid of projectIds) {
      const agents = await redis.hgetall(keys.key('project_agents', pid));
      for (const [aid, expires] of Object.entries(agents)) if (Number(expires) > now && /^\d+$/.test(aid)) ids.add(Number(aid));
    }
    const out: ConnectionRecord[] = [];
    for (const id of [...ids].slice(0, MAX_LIST)) {
      const conns = await redis.hgetall(keys.key('agent_conns', id));
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
}

function parseRecord(json: string): (ConnectionRecord & { expires: number }) | null {
  try {
    const v = JSON.parse(json) as ConnectionRecord & { expires: number };
    return typeof v === 'object' && v !== null && typeof v.expires === 'number' ? v : null;
  } catch {
    return null;
  }
}
