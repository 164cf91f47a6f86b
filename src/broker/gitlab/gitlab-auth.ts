/**
 * GitLab mode authentication: agents by introspecting their token (`agent_info`), proxy users by
 * their credential kind (personal access token, CI job token, session cookie, or a JWT from GitLab
 * itself). Answers are cached under hashes of the credentials (never the credentials themselves);
 * concurrent look-ups share one call; GitLab's definite refusals are cached briefly, failures to
 * reach it not at all.
 */
import { hash } from 'node:crypto';
import { hasErrorCode, ProgramError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { RefusalCache } from '../replicas/replica-state.js';
import { bearerToken } from '../auth/bearer.js';
import { rawHeaderValue } from '../../protocol/http-rules.js';
import type { AgentAuthenticator, AgentIdentity, ProxyAuthenticator, ProxyAuthResult, ProxyDecision, ProxyRequestCredentials } from '../auth/types.js';
import { AsyncCache, type Outcome } from './async-cache.js';
import { GitLabError, type GitLabClient } from './client.js';
import { ciAccessImpersonation, userAccessImpersonation } from './impersonation.js';
import { verifyForKas } from './jwt.js';

export interface GitLabAuthOptions {
  client: GitLabClient;
  logger: Logger;
  infoCacheTtlMs: number;
  infoCacheErrorTtlMs: number;
  proxyCacheTtlMs: number;
  proxyCacheErrorTtlMs: number;
  /** Secret of JWTs GitLab signs for kas (api.listen.authentication_secret_file, else gitlab's). */
  gitlabToKasSecret: Buffer;
  /**
   * Refusals shared with other replicas (Redis), consulted before asking GitLab and fed with every
   * definite refusal; absent for a single replica (the local cache does the same job).
   */
  sharedRefusals?: RefusalCache;
  /**
   * Called on every proxy decision made from GitLab's answers, for usage metrics and agent events:
   * the user (CI job's user, or the GitLab user) and the project (the CI job's project, or the
   * agent's configuration project for user access); null when GitLab itself calls.
   */
  onProxyUse?: (decision: ProxyDecision, userId: number | null, projectId: number | null) => void;
}

export interface AgentAuthInfo extends AgentIdentity {
  defaultBranch: string;
}

const COOKIE_NAME = '_gitlab_kas';

function digest(...parts: string[]): string {
  return hash('sha256', parts.join('\u0000'), 'hex');
}

function isDefinite(err: unknown): boolean {
  return err instanceof GitLabError && err.definite;
}

/** What a cookie header holds for one name: its decoded value, nothing, or a value that does not decode. */
type CookieValue = { found: true; value: string } | { found: false; malformed: boolean };

/**
 * Reads one cookie's value from Cookie headers. A value that is not valid percent-encoding (`%`,
 * `%E0%A4%A`) is no credential at all: the client's bytes must never make authorization throw.
 */
function cookieValue(raw: readonly string[], name: string): CookieValue {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'cookie') continue;
    for (const part of raw[i + 1]!.split(';')) {
      const eq = part.indexOf('=');
      if (eq <= 0 || part.slice(0, eq).trim() !== name) continue;
      try {
        return { found: true, value: decodeURIComponent(part.slice(eq + 1).trim()) };
      } catch {
        return { found: false, malformed: true };
      }
    }
  }
  return { found: false, malformed: false };
}

const AGENT_ID = /^\d{1,18}$/;

interface ProxyAnswer {
  decision: ProxyDecision;
  userId: number | null;
  /** The CI job's project (CI access) or the agent's configuration project (user access). */
  projectId: number | null;
}

export class GitLabAuth implements AgentAuthenticator, ProxyAuthenticator {
  private readonly o: GitLabAuthOptions;
  private readonly agentCache = new AsyncCache<AgentAuthInfo>();
  private readonly proxyCache = new AsyncCache<ProxyAnswer>();

  constructor(options: GitLabAuthOptions) {
    this.o = options;
  }

  /** How often a connected agent's token is checked again: half the success TTL. */
  get revalidateIntervalMs(): number {
    return Math.max(1000, Math.floor(this.o.infoCacheTtlMs / 2));
  }

  private agentTtl = (outcome: Outcome<AgentAuthInfo>): number => {
    if (outcome.ok) return this.o.infoCacheTtlMs;
    return isDefinite(outcome.error) ? this.o.infoCacheErrorTtlMs : 0;
  };

  private async loadAgent(token: string): Promise<AgentAuthInfo> {
    const info = await this.o.client.agentInfo(token);
    return { agentId: info.agent_id, agentName: info.agent_name, projectId: info.project_id, defaultBranch: info.default_branch };
  }

  /** Resolves the agent, null for a token GitLab refuses; throws when GitLab cannot be asked. */
  /** Runs a GitLab look-up unless another replica saw GitLab refuse it recently; shares new refusals. */
  private async sharing<T>(kind: string, key: string, ttlMs: number, load: () => Promise<T>): Promise<T> {
    const shared = this.o.sharedRefusals ?? null;
    if (shared && (await shared.refusedRecently(kind, key))) throw new GitLabError(401, 'refused recently (shared cache)');
    try {
      return await load();
    } catch (err) {
      if (shared && isDefinite(err)) await shared.recordRefusal(kind, key, ttlMs);
      throw err;
    }
  }

  async authenticate(token: string): Promise<AgentAuthInfo | null> {
    const key = digest('agent', token);
    try {
      return await this.agentCache.get(key, () => this.sharing('agent', key, this.o.infoCacheErrorTtlMs, () => this.loadAgent(token)), this.agentTtl);
    } catch (err) {
      if (isDefinite(err)) return null;
      throw err;
    }
  }

  /** Asks GitLab again (bypassing the cache) and refreshes the cache; used for connected agents. */
  async revalidate(token: string): Promise<AgentAuthInfo | null> {
    const key = digest('agent', token);
    try {
      const info = await this.loadAgent(token);
      this.agentCache.put(key, { ok: true, value: info }, this.o.infoCacheTtlMs);
      return info;
    } catch (err) {
      if (isDefinite(err)) {
        this.agentCache.put(key, { ok: false, error: err }, this.o.infoCacheErrorTtlMs);
        return null;
      }
      throw err;
    }
  }

  // ---- proxy credentials -------------------------------------------------------------------

  readonly credentialForms = 'send "Authorization: Bearer pat:<agent-id>:<token>" (a personal access token) or "Authorization: Bearer ci:<agent-id>:<job-token>" (a CI job token)';

  async authorize(req: ProxyRequestCredentials): Promise<ProxyAuthResult> {
    const hasAuthorization = req.rawHeaders.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'authorization');
    if (hasAuthorization) {
      const bearer = bearerToken(req.rawHeaders);
      if (!bearer.ok) return { ok: false, status: 401, message: bearer.message, reason: 'malformed' };
      const token = bearer.token;
      if (token.startsWith('pat:') || token.startsWith('ci:')) {
        const kind = token.startsWith('pat:') ? 'pat' : 'ci';
        const rest = token.slice(kind.length + 1);
        const colon = rest.indexOf(':');
        const agentText = colon > 0 ? rest.slice(0, colon) : '';
        const secret = colon > 0 ? rest.slice(colon + 1) : '';
        if (!AGENT_ID.test(agentText) || secret === '') return { ok: false, status: 401, message: `expected "Bearer ${kind}:<agent-id>:<token>"`, reason: 'malformed' };
        const agentId = Number(agentText);
        return kind === 'pat' ? this.viaGitLab(digest('pat', agentText, secret), () => this.userAccess(agentId, 'personal_access_token', secret, '')) : this.viaGitLab(digest('ci', agentText, secret), () => this.ciAccess(agentId, secret));
      }
      return this.gitlabJwt(token, req);
    }
    const found = cookieValue(req.rawHeaders, COOKIE_NAME);
    if (!found.found) return found.malformed ? { ok: false, status: 401, message: `malformed ${COOKIE_NAME} cookie`, reason: 'malformed' } : { ok: false, status: 401, message: 'no credentials', reason: 'missing' };
    const cookie = found.value;
    const agentText = rawHeaderValue(req.rawHeaders, 'gitlab-agent-id') ?? req.queryParam('gitlab-agent-id');
    const csrf = rawHeaderValue(req.rawHeaders, 'x-csrf-token') ?? req.queryParam('gitlab-csrf-token');
    if (agentText === null || !AGENT_ID.test(agentText)) return { ok: false, status: 400, message: 'a session cookie needs the agent id (Gitlab-Agent-Id header or gitlab-agent-id query parameter)' };
    if (!csrf) return { ok: false, status: 400, message: 'a session cookie needs the CSRF token (X-Csrf-Token header or gitlab-csrf-token query parameter)' };
    const agentId = Number(agentText);
    return this.viaGitLab(digest('cookie', agentText, cookie, csrf), () => this.userAccess(agentId, 'session_cookie', cookie, csrf));
  }

  private async viaGitLab(key: string, load: () => Promise<ProxyAnswer>): Promise<ProxyAuthResult> {
    try {
      const answer = await this.proxyCache.get(key, () => this.sharing('proxy', key, this.o.proxyCacheErrorTtlMs, load), (o) => (o.ok ? this.o.proxyCacheTtlMs : isDefinite(o.error) || hasErrorCode(o.error, 'PROXY_REFUSED') ? this.o.proxyCacheErrorTtlMs : 0));
      this.o.onProxyUse?.(answer.decision, answer.userId, answer.projectId);
      return { ok: true, decision: answer.decision };
    } catch (err) {
      // One answer for every refusal GitLab gives, so agent ids cannot be enumerated.
      if (isDefinite(err)) return { ok: false, status: 401, message: 'Unauthorized', reason: 'refused_by_gitlab' };
      if (err instanceof ProxyRefusal) return { ok: false, status: err.status, message: err.message, ...(err.status === 401 && { reason: 'refused_by_gitlab' as const }) };
      this.o.logger.warn({ err }, 'GitLab could not authorize a proxy request');
      return { ok: false, status: 503, message: 'GitLab is unavailable; try again' };
    }
  }

  private async userAccess(agentId: number, accessType: 'personal_access_token' | 'session_cookie', accessKey: string, csrf: string): Promise<ProxyAnswer> {
    const answer = await this.o.client.authorizeProxyUser({ agent_id: agentId, access_type: accessType, access_key: accessKey, ...(csrf && { csrf_token: csrf }) });
    if (answer.agent.id !== agentId) throw new ProxyRefusal(401, 'Unauthorized');
    return {
      decision: { agentId, impersonate: userAccessImpersonation(answer, accessType), credential: accessType === 'personal_access_token' ? 'pat' : 'session_cookie' },
      userId: answer.user.id,
      projectId: answer.agent.config_project.id,
    };
  }

  private async ciAccess(agentId: number, jobToken: string): Promise<ProxyAnswer> {
    const job = await this.o.client.allowedAgentsForJob(jobToken);
    const agent = job.allowed_agents.find((a) => a.id === agentId);
    if (!agent) throw new ProxyRefusal(403, `this CI job may not use agent ${agentId}`);
    return { decision: { agentId, impersonate: ciAccessImpersonation(job, agent), credential: 'ci' }, userId: job.user.id, projectId: job.project.id };
  }

  /** A JWT GitLab signed for kas: GitLab itself calls the proxy, acting as the agent named by Gitlab-Agent-Id. */
  private async gitlabJwt(token: string, req: ProxyRequestCredentials): Promise<ProxyAuthResult> {
    const claims = await verifyForKas(token, this.o.gitlabToKasSecret);
    if (!claims) return { ok: false, status: 401, message: 'Unauthorized', reason: 'wrong_token' };
    const agentText = rawHeaderValue(req.rawHeaders, 'gitlab-agent-id');
    if (agentText === undefined || !AGENT_ID.test(agentText)) return { ok: false, status: 400, message: 'a call from GitLab needs the Gitlab-Agent-Id header' };
    const decision: ProxyDecision = { agentId: Number(agentText), impersonate: null, credential: 'gitlab_jwt' };
    this.o.onProxyUse?.(decision, null, null);
    return { ok: true, decision };
  }
}

/** A refusal kas decides itself from GitLab's (positive) answer. */
class ProxyRefusal extends ProgramError {
  declare readonly code: 'PROXY_REFUSED';

  constructor(
    readonly status: 401 | 403,
    message: string,
  ) {
    super('PROXY_REFUSED', message);
    this.name = 'ProxyRefusal';
  }
}
