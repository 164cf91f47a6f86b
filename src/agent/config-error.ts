import { ProgramError } from '../shared/errors.js';

/**
 * A mistake in agentk's flags, environment or the files they name. Its message is safe to show and
 * names the flag (or variable) and what was expected; the program exits with code 2 on it.
 */
export class AgentConfigError extends ProgramError {
  declare readonly code: 'BAD_CONFIGURATION';
  /** The flag or environment variable at fault, as the user types it (`--kas-address`, `AGENTK_TOKEN`). */
  readonly key: string;

  constructor(key: string, message: string, options?: { cause?: unknown }) {
    super('BAD_CONFIGURATION', `${key}: ${message}`, options);
    this.name = 'AgentConfigError';
    this.key = key;
  }
}
