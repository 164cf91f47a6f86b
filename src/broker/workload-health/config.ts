/** The workload health summaries kas keeps per agent: how many agents, how many bytes, how long. */
import { z } from 'zod';
import { configPart } from '../configuration/config-part.js';
import { duration, size } from '../configuration/fields.js';

export const workloadHealthConfig = configPart('agent.workload_health', {
  /** Most agents whose summary this replica keeps in memory (disconnected ones go first, oldest first). */
  max_agents: z.number({ error: 'expected a number of agents' }).int().min(1).max(1_000_000).default(10_000),
  /** Most bytes of summaries this replica keeps in memory (JSON, counted as received). */
  max_bytes: size(64 * 1024 * 1024, 1024 * 1024, 16 * 1024 * 1024 * 1024),
  /** How long the summary of a disconnected agent is kept after it was last seen (memory and Redis). */
  retention: duration('24h'),
}, `max_agents: 10000
max_bytes: 67108864
retention: 24h`);
