/**
 * GitLab mode: an agent's configuration file on its configuration project's default branch, read
 * over the REST API with kas's repository token. A HEAD request gives the commit that last changed
 * the file (cheap change detection); only a new commit is fetched, at exactly that commit, and at most
 * 128 KiB of it.
 */
import { createHash } from 'node:crypto';
import type { AgentIdentity } from '../auth/types.js';
import { GitLabError, type GitLabClient } from '../gitlab/client.js';
import { AgentConfigFileError } from './agent-config-file-error.js';
import { configFilePath, type ConfigFile, type ConfigSource } from './config-source.js';
import { MAX_CONFIG_FILE_BYTES } from './schema.js';

/** A file over the limit; `size` null when GitLab did not say and the download was cut. */
function tooLarge(size: number | null): AgentConfigFileError {
  const what = size === null ? `more than ${MAX_CONFIG_FILE_BYTES}` : String(size);
  return new AgentConfigFileError([`the file is ${what} bytes; the limit is ${MAX_CONFIG_FILE_BYTES} bytes (128 KiB)`]);
}

export class GitLabConfigSource implements ConfigSource {
  constructor(private readonly client: Pick<GitLabClient, 'fileHead' | 'fileRaw'>) {}

  async read(agent: AgentIdentity, known: string | null | undefined): Promise<ConfigFile | null> {
    if (agent.projectId === null) throw new Error(`agent ${agent.agentId} has no configuration project`);
    const path = configFilePath(agent.agentName);
    // GitLab resolves HEAD to the default branch; agent_info normally tells it.
    const branch = agent.defaultBranch ?? 'HEAD';
    const head = await this.client.fileHead(agent.projectId, path, branch);
    if (!head) return known === null ? null : { commit: null, content: null };
    const commit = head.commitId || null;
    if (commit !== null && commit === known) return null;
    if (head.size > MAX_CONFIG_FILE_BYTES) return { commit: commit ?? `blob:${head.blobId}`, content: null, problem: tooLarge(head.size) };
    let content: Buffer | null;
    try {
      content = await this.client.fileRaw(agent.projectId, path, commit ?? branch, MAX_CONFIG_FILE_BYTES);
    } catch (err) {
      if (err instanceof GitLabError && err.status === 413) return { commit: commit ?? `blob:${head.blobId}`, content: null, problem: tooLarge(null) };
      throw err;
    }
    // Deleted between the two calls: the next poll sees it gone.
    if (content === null) return known === null ? null : { commit: null, content: null };
    // Without a commit id in the answer, the content itself tells versions apart.
    const version = commit ?? `sha256:${createHash('sha256').update(content).digest('hex')}`;
    if (version === known) return null;
    return { commit: version, content };
  }
}
