/**
 * The workload health of agents in Redis, so that any replica answers for an agent connected to
 * another one: a hash per agent (`<prefix>:workload_health:<agent id>` with the fields summary,
 * updated_at, last_seen, instance, seq) that expires `retentionMs` after its last write. The
 * replica holding an agent writes it when a summary arrives and when the agent connects or
 * disconnects. Failures are counted and logged once per outage; callers then use their memory.
 */
import type { FeatureRedis } from '../replicas/feature-redis.js';
import type { HealthRecord } from './health-store.js';

// Keeps a summary unless the stored one is a later one of the same agentk process.
const PUT_SCRIPT = `
local instance = redis.call('HGET', KEYS[1], 'instance')
if instance == ARGV[1] then
  local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
  if seq and seq > tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], 'instance', ARGV[1], 'seq', ARGV[2], 'summary', ARGV[3], 'updated_at', ARGV[4], 'last_seen', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`;

export class RedisHealthMirror {
  constructor(
    private readonly shared: FeatureRedis,
    private readonly retentionMs: number,
  ) {}

  private key(agentId: number): string {
    return this.shared.keys.key('workload_health', agentId);
  }

  async put(agentId: number, rec: HealthRecord): Promise<void> {
    if (rec.summary === null || rec.instance === null || rec.updatedAt === null) return;
    await this.shared.run((redis) => redis.eval(PUT_SCRIPT, 1, this.key(agentId), rec.instance!, String(rec.seq), rec.summary!, String(rec.updatedAt), String(this.retentionMs)));
  }

  async seen(agentId: number, now: number): Promise<void> {
    const key = this.key(agentId);
    await this.shared.run((redis) => redis.multi().hset(key, 'last_seen', String(now)).pexpire(key, this.retentionMs).exec());
  }

  /** The agent's record in Redis; null when there is none, undefined when Redis failed. */
  async get(agentId: number): Promise<HealthRecord | null | undefined> {
    const fields = await this.shared.run((redis) => redis.hgetall(this.key(agentId)));
    if (fields === undefined) return undefined;
    const lastSeen = Number(fields.last_seen);
    if (!Number.isFinite(lastSeen)) return null;
    const updatedAt = Number(fields.updated_at);
    const hasSummary = typeof fields.summary === 'string' && Number.isFinite(updatedAt);
    return {
      summary: hasSummary ? fields.summary! : null,
      updatedAt: hasSummary ? updatedAt : null,
      lastSeen,
      instance: fields.instance ?? null,
      seq: Number(fields.seq) || 0,
    };
  }
}
