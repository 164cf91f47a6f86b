/** How many GitOps apply results kas keeps (the latest per agent and project), and how long in Redis. */
import { z } from 'zod';
import { configPart } from '../configuration/config-part.js';
import { duration, size } from '../configuration/fields.js';

export const gitopsStatusConfig = configPart(
  'agent.gitops_status',
  {
    max_results: z.number({ error: 'expected a whole number' }).int().min(1).max(1_000_000).default(10_000),
    max_bytes: size(64 * 1024 * 1024, 1024 * 1024, 16 * 1024 * 1024 * 1024),
    /** With a redis section: how long an agent's results stay in Redis after its last one. */
    redis_ttl: duration('24h'),
  },
  `# Latest apply result per agent and manifest project, oldest dropped first beyond either bound
# (in memory: over all agents; in Redis, with a redis section: per agent).
max_results: 10000
max_bytes: 67108864
redis_ttl: 24h                # with a redis section: how long an agent's results stay in Redis`,
);
