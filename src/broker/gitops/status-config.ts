/** How many GitOps apply results kas keeps (the latest per agent and project). */
import { z } from 'zod';
import { configPart } from '../configuration/config-part.js';
import { size } from '../configuration/fields.js';

export const gitopsStatusConfig = configPart(
  'agent.gitops_status',
  {
    max_results: z.number({ error: 'expected a whole number' }).int().min(1).max(1_000_000).default(10_000),
    max_bytes: size(64 * 1024 * 1024, 1024 * 1024, 16 * 1024 * 1024 * 1024),
  },
  `# Latest apply result per agent and manifest project, oldest dropped first beyond either bound.
max_results: 10000
max_bytes: 67108864`,
);
