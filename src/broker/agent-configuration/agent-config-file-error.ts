/**
 * A mistake in an agent's configuration file: invalid YAML, an unknown key, a value of the wrong
 * type, a file that is too large. Its message is written for the people who edit the file and is safe
 * to show them (in logs, in GitLab, in the API for GitLab): it names the key and what was expected and
 * never carries credentials or kas internals. Failures to read the file (GitLab unreachable, a
 * permission error) are not this error: they say nothing about the file.
 */
import { ProgramError } from '../../shared/errors.js';

export class AgentConfigFileError extends ProgramError {
  declare readonly code: 'AGENT_CONFIG_INVALID';
  /** One line per problem, `path.to.key: what was expected` (or a YAML syntax error). */
  readonly issues: readonly string[];

  constructor(issues: readonly string[]) {
    super('AGENT_CONFIG_INVALID', issues.join('; '));
    this.name = 'AgentConfigFileError';
    this.issues = issues;
  }
}
