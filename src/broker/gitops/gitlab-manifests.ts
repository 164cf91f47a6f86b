/**
 * GitLab mode: a manifest project read over GitLab's REST API. First GitLab is asked whether the
 * agent may read the project (`project_info` with the agent's token and kas's JWT, cached like the
 * other answers about agents: success `agent.info_cache_ttl`, refusals `agent.info_cache_error_ttl`);
 * then the ref is resolved to a commit (`repository/commits/:ref`), and the tree (every page) and
 * the matching raw files are read at exactly that commit with kas's repository token, so a branch
 * that moves during the read does not mix two commits.
 */
import { createHash } from 'node:crypto';
import { AsyncCache, type Outcome } from '../gitlab/async-cache.js';
import { GitLabError, type GitLabClient, type ProjectInfo } from '../gitlab/client.js';
import { collectFiles, compileGlobs, ManifestFileError, ManifestProblemError, type ListedEntry, type ManifestLimits, type ManifestProjectSpec, type ManifestReader, type ManifestSource, type SourceResult } from './manifest-source.js';

/** Most tree entries listed for one project (every glob folder together). */
const MAX_TREE_ENTRIES = 50_000;

export interface GitLabManifestsOptions {
  client: Pick<GitLabClient, 'projectInfo' | 'commit' | 'tree' | 'fileRaw'>;
  infoCacheTtlMs: number;
  infoCacheErrorTtlMs: number;
  limits?: Partial<ManifestLimits>;
  /** Raw files read at once. */
  concurrency?: number;
}

export class GitLabManifests implements ManifestSource {
  private readonly access = new AsyncCache<ProjectInfo>(10_000);

  constructor(private readonly o: GitLabManifestsOptions) {}

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** project_info, cached per (token digest, project); a refusal is a ManifestProblemError. */
  private async projectInfo(reader: ManifestReader, project: string): Promise<ProjectInfo> {
    const token = reader.token;
    if (!token) throw new ManifestProblemError('MANIFEST_PROJECT_FORBIDDEN', 'kas does not know the agent\'s token, so it cannot ask GitLab whether the agent may read the project');
    const key = `${createHash('sha256').update(token).digest('hex')}\0${project}`;
    const ttl = (o: Outcome<ProjectInfo>) => (o.ok ? this.o.infoCacheTtlMs : o.error instanceof GitLabError && o.error.definite ? this.o.infoCacheErrorTtlMs : 0);
    try {
      return await this.access.get(key, () => this.o.client.projectInfo(token, project), ttl);
    } catch (err) {
      if (err instanceof GitLabError && err.definite) {
        throw new ManifestProblemError('MANIFEST_PROJECT_FORBIDDEN', `the agent may not read project ${project} (GitLab answered ${err.status} to project_info)`, { cause: err });
      }
      throw err;
    }
  }

  async read(reader: ManifestReader, spec: ManifestProjectSpec, known: string | undefined): Promise<SourceResult> {
    const info = await this.projectInfo(reader, spec.id);
    const project = info.project_id;
    const ref = spec.ref?.commit ?? spec.ref?.tag ?? spec.ref?.branch ?? info.default_branch ?? 'HEAD';
    const resolved = await this.o.client.commit(project, ref);
    if (!resolved) {
      const what = spec.ref?.commit !== undefined ? 'commit' : spec.ref?.tag !== undefined ? 'tag' : 'branch';
      throw new ManifestProblemError('MANIFEST_REF_NOT_FOUND', `${what} ${JSON.stringify(ref)} does not exist in project ${spec.id}`);
    }
    const commit = resolved.id;
    if (commit === known) return { pushId: project, snapshot: null };
    const globs = compileGlobs(spec.globs);
    const entries: ListedEntry[] = [];
    for (const prefix of globs.matchers.length === 0 ? [] : globs.prefixes) {
      const listed = await this.o.client.tree(project, prefix, commit, MAX_TREE_ENTRIES);
      for (const e of listed) {
        if (e.type === 'tree') continue;
        // blob: a file (GitLab's tree does not tell symbolic links apart); commit: a submodule.
        entries.push({ path: e.path, size: null, regular: e.type === 'blob' });
      }
      if (entries.length > MAX_TREE_ENTRIES) throw new GitLabError(0, `the repository tree of project ${spec.id} has more than ${MAX_TREE_ENTRIES} entries`);
    }
    const snapshot = await collectFiles(commit, entries, globs, {
      concurrency: this.o.concurrency ?? 8,
      limits: this.o.limits,
      read: async (e, maxBytes) => {
        let data: Buffer | null;
        try {
          data = await this.o.client.fileRaw(project, e.path, commit, maxBytes);
        } catch (err) {
          if (err instanceof GitLabError && err.status === 413) throw new ManifestFileError('MANIFEST_FILE_TOO_LARGE', `the file is more than ${maxBytes} bytes; the limit is ${maxBytes}`);
          throw err;
        }
        if (data === null) throw new ManifestFileError('MANIFEST_FILE_UNREADABLE', `GitLab answered 404 for the file at commit ${commit}`);
        return data;
      },
    });
    return { pushId: project, snapshot };
  }
}
