import { ProgramError } from '../../shared/errors.js';

/** A configuration error: its message names the key and is safe to show (kas exits 2 on it). */
export class ConfigError extends ProgramError {
  declare readonly code: 'CONFIG_INVALID';

  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG_INVALID', message, options);
    this.name = 'ConfigError';
  }
}
