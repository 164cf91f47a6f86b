/**
 * Structured logging for both programs: pino JSON on stdout, with credentials redacted wherever they
 * appear under the usual field names. Field names that several modules share live in LogFields.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** Field names shared by every module, so logs can be joined and queried. */
export const LogFields = {
  agentId: 'agentId',
  sessionId: 'sessionId',
  streamId: 'streamId',
  listener: 'listener',
  address: 'address',
  code: 'code',
  err: 'err',
} as const;

/** Paths pino replaces with "[REDACTED]": tokens, cookies, JWTs, authorization headers. */
export const REDACT_PATHS = [
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'headers.cookie',
  'req.headers.authorization',
  'req.headers.cookie',
  'cookie',
  '*.cookie',
  'jwt',
  '*.jwt',
  'password',
  '*.password',
  'secret',
  '*.secret',
];

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const satisfies readonly LevelWithSilent[];

export function createLogger(options: { name: string; level?: LevelWithSilent; destination?: NodeJS.WritableStream }): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      base: { name: options.name },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? pino.destination({ fd: 1, sync: true }),
  );
}
