/** The GitOps feature's keys: how often manifest projects are polled, and where git sources are cached (standalone mode). */
import { z } from 'zod';
import { configPart } from '../configuration/config-part.js';
import { duration, file } from '../configuration/fields.js';

export const gitopsConfig = configPart(
  'agent.gitops',
  {
    poll_period: duration('5m'),
    cache_dir: file.optional(),
    enabled: z.boolean({ error: 'expected true or false' }).default(true),
  },
  `enabled: true
poll_period: 5m
# cache_dir: /var/cache/kas/gitops   # standalone git sources are fetched here; default a temporary folder`,
);
