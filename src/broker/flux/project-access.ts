/**
 * Whether an agent may follow a project's pushes, and the project's id (GitLab mode): GitLab's
 * `GET /api/v4/internal/kubernetes/project_info?id=<path>` with kas's JWT and the agent's token.
 * project_info answers the same question as verify_project_access (404 when the agent may not read
 * the project) and also gives the numeric id pushes are published under, so one call does both.
 * Answers are cached (by a digest of the token and the lower-cased path, never the token): access
 * for `okTtlMs`, GitLab's definite refusals for `refusalTtlMs`, other failures not at all.
 */
import { createHash } from 'node:crypto';
import { projectKey } from '../../protocol/flux.js';
import { AsyncCache } from '../gitlab/async-cache.js';
import { GitLabError, type GitLabClient } from '../gitlab/client.js';

export type ProjectAccess = { ok: true; projectId: number } | { ok: false; reason: string; definite: boolean };

export interface ProjectAccessChecker {
  check(agentToken: string, path: string): Promise<ProjectAccess>;
}

export class GitLabProjectAccess implements ProjectAccessChecker {
  private readonly cache: AsyncCache<number>;

  constructor(
    private readonly client: Pick<GitLabClient, 'call'>,
    private readonly ttl: { okTtlMs: number; refusalTtlMs: number },
    maxEntries = 10_000,
  ) {
    this.cache = new AsyncCache<number>(maxEntries);
  }

  async check(agentToken: string, path: string): Promise<ProjectAccess> {
    const key = createHash('sha256').update(agentToken).update('\u0000').update(projectKey(path)).digest('hex');
    try {
      const projectId = await this.cache.get(
        key,
        () => this.load(agentToken, path),
        (outcome) => (outcome.ok ? this.ttl.okTtlMs : outcome.error instanceof GitLabError && outcome.error.definite ? this.ttl.refusalTtlMs : 0),
      );
      return { ok: true, projectId };
    } catch (err) {
      if (err instanceof GitLabError && err.definite) return { ok: false, reason: `GitLab refused access to the project (${err.status})`, definite: true };
      return { ok: false, reason: `GitLab could not be asked: ${(err as Error).message}`.slice(0, 300), definite: false };
    }
  }

  private async load(agentToken: string, path: string): Promise<number> {
    const res = await this.client.call({ path: 'internal/kubernetes/project_info', query: { id: path }, jwt: true, idempotent: true, headers: { Authorization: `Bearer ${agentToken}` } });
    let json: unknown;
    try {
      json = JSON.parse(res.body.toString('utf8'));
    } catch (err) {
      throw new GitLabError(502, "GitLab's answer to project_info is not JSON", { cause: err });
    }
    const id = (json as { project_id?: unknown } | null)?.project_id;
    const n = typeof id === 'number' ? id : typeof id === 'string' && /^\d{1,18}$/.test(id) ? Number(id) : NaN;
    if (!Number.isSafeInteger(n) || n <= 0) throw new GitLabError(502, "GitLab's answer to project_info has no project_id");
    return n;
  }
}
