/** The observability listener's keys and the log level. */
import { z } from 'zod';
import { LOG_LEVELS } from '../../shared/logger.js';
import { configPart } from '../configuration/config-part.js';
import { address } from '../configuration/fields.js';

export const observabilityConfig = configPart('observability', {
  listen: z.strictObject({ address: address('127.0.0.1:8151') }).prefault({}),
  logging: z.strictObject({ level: z.enum(LOG_LEVELS).default('info') }).prefault({}),
}, `listen:
  address: 127.0.0.1:8151
logging:
  level: info`);
