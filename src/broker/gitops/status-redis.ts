/**
 * The latest GitOps apply results of agents in Redis, so that every replica answers
 * `GET /api/v1/agents/{agent_id}/gitops` for an agent that reported to another one: a hash per agent
 * (`<prefix>:gitops_status:<agent id>`), field = manifest project id, value = `<received ms>\n<status
 * JSON>`. Bounded per agent like the memory store (max_results fields, max_bytes of values; the
 * oldest go first, never the one just written) and expiring `ttlMs` after the agent's last result.
 */
import type { GitopsStatusWire } from '../../protocol/gitops-status.js';
import type { FeatureRedis } from '../replicas/feature-redis.js';

// KEYS[1] the agent's hash; ARGV: field, value, max results, max bytes, ttl ms. Returns how many
// older results were dropped.
const PUT_SCRIPT = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local maxResults = tonumber(ARGV[3])
local maxBytes = tonumber(ARGV[4])
local count = #all / 2
local bytes = 0
for i = 2, #all, 2 do bytes = bytes + #all[i] end
local dropped = 0
if count > maxResults or bytes > maxBytes then
  local items = {}
  for i = 1, #all, 2 do
    if all[i] ~= ARGV[1] then
      local at = tonumber(string.match(all[i + 1], '^(%d+)\\n')) or 0
      items[#items + 1] = { at, all[i], #all[i + 1] }
    end
  end
  table.sort(items, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  for _, item in ipairs(items) do
    if count <= maxResults and bytes <= maxBytes then break end
    redis.call('HDEL', KEYS[1], item[2])
    count = count - 1
    bytes = bytes - item[3]
    dropped = dropped + 1
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return dropped
`;

export interface SharedStatus {
  receivedAt: string;
  status: GitopsStatusWire;
}

export class RedisGitopsStatus {
  constructor(
    private readonly shared: FeatureRedis,
    private readonly limits: { maxResults: number; maxBytes: number; ttlMs: number },
  ) {}

  key(agentId: number): string {
    return this.shared.keys.key('gitops_status', agentId);
  }

  /** Keeps the result as the agent's latest for its project; false when Redis failed. */
  async put(agentId: number, receivedAt: Date, status: GitopsStatusWire): Promise<boolean> {
    const value = `${receivedAt.getTime()}\n${JSON.stringify(status)}`;
    const { maxResults, maxBytes, ttlMs } = this.limits;
    const out = await this.shared.run((redis) => redis.eval(PUT_SCRIPT, 1, this.key(agentId), status.project_id, value, String(maxResults), String(maxBytes), String(ttlMs)));
    return out !== undefined;
  }

  /** The agent's latest result per project, by project id; undefined when Redis failed. */
  async forAgent(agentId: number): Promise<SharedStatus[] | undefined> {
    const fields = await this.shared.run((redis) => redis.hgetall(this.key(agentId)));
    if (fields === undefined) return undefined;
    const out: SharedStatus[] = [];
    for (const value of Object.values(fields)) {
      const nl = value.indexOf('\n');
      const at = Number(value.slice(0, nl));
      if (nl < 0 || !Number.isFinite(at)) continue;
      try {
        out.push({ receivedAt: new Date(at).toISOString(), status: JSON.parse(value.slice(nl + 1)) as GitopsStatusWire });
      } catch {
        // Not written by kas: skipped.
      }
    }
    return out.sort((a, b) => (a.status.project_id < b.status.project_id ? -1 : 1));
  }
}
