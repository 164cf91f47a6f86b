/**
 * kas's client of the GitLab REST API (docs: ../shared/design/gitlab-contract.md). Every internal
 * call carries a fresh `Gitlab-Kas-Api-Request` JWT; repository reads use kas's own repository
 * token. Redirects are errors (never followed); every call has a timeout and a response size cap;
 * idempotent calls are retried with backoff on connection errors, 429 and 5xx; the whole client is
 * rate limited by a token bucket.
 */
import http from 'node:http';
import https from 'node:https';
import { z } from 'zod';
import { ProgramError } from '../../shared/errors.js';
import { KAS_JWT_HEADER, signKasToGitLab } from './jwt.js';
import { TokenBucket } from './token-bucket.js';

export interface GitLabClientOptions {
  address: string;
  secret: Buffer;
  caPem?: Buffer | string;
  repositoryToken?: string;
  rateLimit?: { refillPerSecond: number; bucketSize: number };
  timeoutMs?: number;
  /** Attempts for idempotent calls (first try included). */
  attempts?: number;
  userAgent?: string;
}

/** A failed GitLab call. `status` is the HTTP status, or 0 when no answer came (network, timeout). */
export class GitLabError extends ProgramError {
  declare readonly code: 'GITLAB_ERROR';

  constructor(
    readonly status: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('GITLAB_ERROR', message, options);
    this.name = 'GitLabError';
  }

  /** GitLab's definite "no" (400, 401, 403, 404; GitLab answers an unknown personal access token with 400): cacheable, never retried. */
  get definite(): boolean {
    return this.status === 400 || this.status === 401 || this.status === 403 || this.status === 404;
  }
}

const id = z.union([z.number().int(), z.string().regex(/^\d+$/).transform(Number)]);

export const agentInfoSchema = z.object({
  project_id: id,
  agent_id: id,
  agent_name: z.string(),
  default_branch: z.string().optional().default('main'),
});
export type AgentInfo = z.output<typeof agentInfoSchema>;

/** project_info: a project the agent may read (GitOps manifest projects). */
export const projectInfoSchema = z.object({
  project_id: id,
  default_branch: z.string().optional(),
});
export type ProjectInfo = z.output<typeof projectInfoSchema>;

const roles = z.object({ id, roles: z.array(z.string()).default([]) });
export const authorizeProxyUserSchema = z.object({
  agent: z.object({ id, config_project: z.object({ id }) }),
  user: z.object({ id, username: z.string() }),
  access_as: z.union([
    z.object({ agent: z.object({}).loose() }),
    z.object({ user: z.object({ projects: z.array(roles).default([]), groups: z.array(roles).default([]) }).loose() }),
  ]),
});
export type AuthorizeProxyUser = z.output<typeof authorizeProxyUserSchema>;

const impersonateSchema = z.object({
  username: z.string(),
  uid: z.string().optional(),
  groups: z.array(z.string()).optional(),
  extra: z.array(z.object({ key: z.string(), val: z.array(z.string()) })).or(z.record(z.string(), z.array(z.string()))).optional(),
});
export const ciAccessAsSchema = z
  .union([z.object({ agent: z.object({}).loose() }), z.object({ impersonate: impersonateSchema }), z.object({ ci_job: z.object({}).loose() })])
  .optional();
export const allowedAgentsSchema = z.object({
  allowed_agents: z.array(z.object({ id, config_project: z.object({ id }), configuration: z.object({ default_namespace: z.string().optional(), access_as: ciAccessAsSchema }).loose().optional() })),
  job: z.object({ id }),
  pipeline: z.object({ id }),
  project: z.object({ id, groups: z.array(z.object({ id })).default([]) }),
  user: z.object({ id, username: z.string(), roles_in_project: z.array(z.string()).optional() }),
  environment: z.object({ slug: z.string(), tier: z.string() }).optional().nullable(),
});
export type AllowedAgents = z.output<typeof allowedAgentsSchema>;

interface CallOptions {
  method?: string;
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: unknown;
  /** Sign the call with the kas JWT (every /internal call). */
  jwt?: boolean;
  /** Safe to repeat: retried on connection errors, 429 and 5xx. */
  idempotent?: boolean;
  maxBytes?: number;
}

export interface GitLabResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

const DEFAULT_MAX_BYTES = 1024 * 1024;

export class GitLabClient {
  private readonly base: URL;
  private readonly options: GitLabClientOptions;
  private readonly bucket: TokenBucket;
  private readonly agent: http.Agent;

  constructor(options: GitLabClientOptions) {
    this.options = options;
    this.base = new URL(options.address.endsWith('/') ? options.address : `${options.address}/`);
    const rl = options.rateLimit ?? { refillPerSecond: 50, bucketSize: 250 };
    this.bucket = new TokenBucket(rl.refillPerSecond, rl.bucketSize);
    this.agent = this.base.protocol === 'https:' ? new https.Agent({ keepAlive: true, ca: options.caPem, maxSockets: 64 }) : new http.Agent({ keepAlive: true, maxSockets: 64 });
  }

  close(): void {
    this.agent.destroy();
  }

  // ---- the calls of the contract ----------------------------------------------------------

  async agentInfo(agentToken: string): Promise<AgentInfo> {
    const res = await this.call({ path: 'internal/kubernetes/agent_info', jwt: true, idempotent: true, headers: { Authorization: `Bearer ${agentToken}` } });
    return parse(agentInfoSchema, res, 'agent_info');
  }

  async authorizeProxyUser(body: { agent_id: number; access_type: 'personal_access_token' | 'session_cookie'; access_key: string; csrf_token?: string }): Promise<AuthorizeProxyUser> {
    const res = await this.call({ method: 'POST', path: 'internal/kubernetes/authorize_proxy_user', jwt: true, idempotent: true, body: { ...body, agent_id: String(body.agent_id) } });
    return parse(authorizeProxyUserSchema, res, 'authorize_proxy_user');
  }

  async allowedAgentsForJob(jobToken: string): Promise<AllowedAgents> {
    const res = await this.call({ path: 'job/allowed_agents', idempotent: true, headers: { 'Job-Token': jobToken } });
    return parse(allowedAgentsSchema, res, 'job/allowed_agents');
  }

  async postAgentConfiguration(agentId: number, agentConfig: unknown): Promise<void> {
    await this.call({ method: 'POST', path: 'internal/kubernetes/agent_configuration', jwt: true, idempotent: true, body: { agent_id: String(agentId), agent_config: agentConfig } });
  }

  /** Not idempotent: a repeated report would count twice. */
  async postUsageMetrics(body: { counters: Record<string, number>; unique_counters: Record<string, number[]> }): Promise<void> {
    await this.call({ method: 'POST', path: 'internal/kubernetes/usage_metrics', jwt: true, idempotent: false, body });
  }

  /** May the agent read this project (full path or number)? 403/404 come back as definite GitLabErrors. */
  async projectInfo(agentToken: string, project: string): Promise<ProjectInfo> {
    const res = await this.call({ path: 'internal/kubernetes/project_info', query: { id: project }, jwt: true, idempotent: true, headers: { Authorization: `Bearer ${agentToken}` } });
    return parse(projectInfoSchema, res, 'project_info');
  }

  /** The commit a branch, tag or commit id names (GET /projects/:id/repository/commits/:ref), or null when there is none. */
  async commit(project: number | string, ref: string): Promise<{ id: string } | null> {
    try {
      const res = await this.call({ path: `projects/${encodeURIComponent(String(project))}/repository/commits/${encodeURIComponent(ref)}`, idempotent: true, headers: this.repositoryHeaders() });
      return parse(z.object({ id: z.string().regex(/^[0-9a-f]{40,64}$/) }), res, 'repository/commits');
    } catch (err) {
      if (err instanceof GitLabError && err.status === 404) return null;
      throw err;
    }
  }

  /** HEAD of a repository file: its commit and blob ids, or null when the file does not exist. */
  async fileHead(project: number | string, path: string, ref: string): Promise<{ commitId: string; blobId: string; size: number } | null> {
    try {
      const res = await this.call({ method: 'HEAD', path: `projects/${encodeURIComponent(String(project))}/repository/files/${encodeURIComponent(path)}`, query: { ref }, idempotent: true, headers: this.repositoryHeaders() });
      const h = (name: string) => String(res.headers[name] ?? '');
      return { commitId: h('x-gitlab-last-commit-id') || h('x-gitlab-commit-id'), blobId: h('x-gitlab-blob-id'), size: Number(h('x-gitlab-size') || '0') };
    } catch (err) {
      if (err instanceof GitLabError && err.status === 404) return null;
      throw err;
    }
  }

  /** The raw bytes of a repository file, or null when it does not exist. Refuses files over maxBytes. */
  async fileRaw(project: number | string, path: string, ref: string, maxBytes: number): Promise<Buffer | null> {
    try {
      const res = await this.call({ path: `projects/${encodeURIComponent(String(project))}/repository/files/${encodeURIComponent(path)}/raw`, query: { ref }, idempotent: true, headers: this.repositoryHeaders(), maxBytes });
      return res.body;
    } catch (err) {
      if (err instanceof GitLabError && err.status === 404) return null;
      throw err;
    }
  }

  /** Every entry of a repository tree (all pages). */
  async tree(project: number | string, path: string, ref: string | null, maxEntries = 10_000): Promise<Array<{ path: string; type: string; name: string }>> {
    const out: Array<{ path: string; type: string; name: string }> = [];
    for (let page = 1; ; page++) {
      let res: GitLabResponse;
      try {
        res = await this.call({ path: `projects/${encodeURIComponent(String(project))}/repository/tree`, query: { path, ...(ref !== null && { ref }), recursive: 'true', per_page: '100', page: String(page) }, idempotent: true, headers: this.repositoryHeaders() });
      } catch (err) {
        if (err instanceof GitLabError && err.status === 404) return out;
        throw err;
      }
      const entries = parse(z.array(z.object({ path: z.string(), type: z.string(), name: z.string() })), res, 'repository/tree');
      out.push(...entries);
      if (out.length > maxEntries) throw new GitLabError(0, `repository tree of project ${project} has more than ${maxEntries} entries`);
      const next = String(res.headers['x-next-page'] ?? '');
      if (!next || entries.length === 0) return out;
    }
  }

  /** True when kas may read repositories (gitlab.repository_token_file is set). */
  get hasRepositoryToken(): boolean {
    return this.options.repositoryToken !== undefined;
  }

  private repositoryHeaders(): Record<string, string> {
    if (!this.options.repositoryToken) throw new GitLabError(0, 'no repository token configured (gitlab.repository_token_file)');
    return { 'PRIVATE-TOKEN': this.options.repositoryToken };
  }

  // ---- transport ----------------------------------------------------------------------------

  async call(o: CallOptions): Promise<GitLabResponse> {
    const attempts = o.idempotent ? (this.options.attempts ?? 3) : 1;
    let lastError: GitLabError | null = null;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await sleep(Math.min(2000, 100 * 2 ** (attempt - 2)) * (0.5 + Math.random()));
      try {
        const res = await this.once(o);
        if (res.status >= 200 && res.status < 300) return res;
        lastError = new GitLabError(res.status, `GitLab answered ${res.status} to ${o.method ?? 'GET'} ${o.path}: ${errorMessage(res.body)}`);
        if (!(res.status === 429 || res.status >= 500)) throw lastError;
      } catch (err) {
        if (err instanceof GitLabError && err.status !== 0 && !(err.status === 429 || err.status >= 500)) throw err;
        lastError = err instanceof GitLabError ? err : new GitLabError(0, `GitLab call ${o.method ?? 'GET'} ${o.path} failed: ${(err as Error).message}`, { cause: err });
      }
    }
    throw lastError!;
  }

  private async once(o: CallOptions): Promise<GitLabResponse> {
    await this.bucket.take();
    const url = new URL(`api/v4/${o.path}`, this.base);
    for (const [k, v] of Object.entries(o.query ?? {})) url.searchParams.set(k, v);
    const headers: Record<string, string> = { Accept: 'application/json', 'User-Agent': this.options.userAgent ?? 'gitlab-agent-ts-kas', ...o.headers };
    if (o.jwt) headers[KAS_JWT_HEADER] = await signKasToGitLab(this.options.secret);
    let payload: Buffer | null = null;
    if (o.body !== undefined) {
      payload = Buffer.from(JSON.stringify(o.body));
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    const maxBytes = o.maxBytes ?? DEFAULT_MAX_BYTES;
    const timeoutMs = this.options.timeoutMs ?? 20_000;
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise<GitLabResponse>((resolve, reject) => {
      const req = lib.request(url, { method: o.method ?? 'GET', headers, agent: this.agent, timeout: timeoutMs }, (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400) {
          res.resume();
          reject(new GitLabError(status, `GitLab answered a redirect (${status}) to ${o.path}; kas does not follow redirects: check gitlab.address`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        let cut = false;
        res.on('data', (c: Buffer) => {
          if (cut) return;
          size += c.length;
          if (size > maxBytes) {
            // Once: the rest of the answer is dropped with the connection.
            cut = true;
            const err = new GitLabError(413, `GitLab's answer to ${o.path} exceeds ${maxBytes} bytes`);
            reject(err);
            // Not req.destroy(err): with keep-alive the socket may already be back in the pool, where
            // an error event has no listener. Destroying the response closes the connection quietly.
            res.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => resolve({ status, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new GitLabError(0, `GitLab did not answer ${o.path} within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload ?? undefined);
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function errorMessage(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString()) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message.slice(0, 200);
  } catch {
    // not JSON
  }
  return body.subarray(0, 200).toString();
}

function parse<T extends z.ZodType>(schema: T, res: GitLabResponse, what: string): z.output<T> {
  let json: unknown;
  try {
    json = JSON.parse(res.body.toString());
  } catch (err) {
    throw new GitLabError(502, `GitLab's answer to ${what} is not JSON`, { cause: err });
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new GitLabError(502, `GitLab's answer to ${what} has an unexpected shape: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}
