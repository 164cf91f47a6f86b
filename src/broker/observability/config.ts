/** The observability listener's keys, the log level, and how long kas stays up after SIGTERM while not ready. */
import { z } from 'zod';
import { LOG_LEVELS } from '../../shared/logger.js';
import { configPart } from '../configuration/config-part.js';
import { address, duration } from '../configuration/fields.js';

export const observabilityConfig = configPart('observability', {
  listen: z.strictObject({ address: address('127.0.0.1:8151') }).prefault({}),
  logging: z.strictObject({ level: z.enum(LOG_LEVELS).default('info') }).prefault({}),
}, `listen:
  address: 127.0.0.1:8151
logging:
  level: info`);

/**
 * shutdown_delay belongs with readiness: during it only /readiness changes (503), everything else
 * keeps serving, so that an ingress removing the endpoint asynchronously sees the failing probe
 * before kas stops accepting connections.
 */
export const shutdownConfig = configPart('', { shutdown_delay: duration('0s') }, `# On SIGTERM: not ready at once, but keep accepting and serving for this long before draining, so an
# ingress removes this replica before it stops accepting (set it above the ingress's probe period).
shutdown_delay: 0s
`);
