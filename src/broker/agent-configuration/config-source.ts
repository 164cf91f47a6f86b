/**
 * Where agent configuration files come from: the agent's configuration project in GitLab
 * (gitlab-source.ts) or a local directory in standalone mode (directory-source.ts).
 */
import type { AgentIdentity } from '../auth/types.js';
import type { AgentConfigFileError } from './agent-config-file-error.js';

/** The file's path inside the configuration project (agent names are DNS labels). */
export function configFilePath(agentName: string): string {
  return `.gitlab/agents/${agentName}/config.yaml`;
}

/** One read of an agent's configuration file. */
export interface ConfigFile {
  /**
   * The file's version, for change detection and status: a commit id in GitLab mode, `sha256:<hex>`
   * of the content in standalone mode; null when there is no file.
   */
  commit: string | null;
  /** The file's bytes; null when there is no file (the empty configuration) or `problem` is set. */
  content: Uint8Array | null;
  /** The file exists but cannot be used (too large, not a regular file): a configuration error. */
  problem?: AgentConfigFileError;
}

export interface ConfigSource {
  /**
   * Reads the agent's configuration file, or resolves null when its version is still `known` (the
   * `commit` of the previous read; undefined when there was none). Rejects when the file cannot be
   * read at all (GitLab unreachable, a permission error): that says nothing about the file, and the
   * caller keeps what it has. Safe to call concurrently for different agents.
   */
  read(agent: AgentIdentity, known: string | null | undefined): Promise<ConfigFile | null>;
}
