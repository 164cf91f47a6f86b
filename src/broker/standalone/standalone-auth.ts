/**
 * Standalone mode credentials: agents and proxy tokens listed in the configuration, their tokens read
 * from files at start and kept only as SHA-256 digests, compared in constant time.
 */
import type { Impersonation } from '../../protocol/http.js';
import { digestsMatch, readTokenFile, tokenDigest } from '../../shared/tokens.js';
import { ConfigError } from '../configuration/config-error.js';
import type { AccessAs, StandaloneConfig } from './config.js';
import type { AgentAuthenticator, AgentIdentity, ProxyAuthenticator, ProxyAuthResult, ProxyRequestCredentials } from '../auth/types.js';
import { bearerToken } from '../auth/bearer.js';

interface AgentEntry { identity: AgentIdentity; digest: Buffer }
interface ProxyEntry { digest: Buffer; agents: Set<number>; impersonate: Impersonation | null }

export function impersonationOf(accessAs: AccessAs): Impersonation | null {
  if ('agent' in accessAs) return null;
  const { username, uid, groups, extra } = accessAs.impersonate;
  return { username, ...(uid !== undefined && { uid }), ...(groups && { groups }), ...(extra && { extra }) };
}

/** Most accepted proxy credentials remembered (see StandaloneAuth.accepted). */
const ACCEPTED_CACHE_SIZE = 1024;

export class StandaloneAuth implements AgentAuthenticator, ProxyAuthenticator {
  private readonly agents: AgentEntry[];
  private readonly proxyTokens: ProxyEntry[];
  /**
   * Credentials accepted before, with their answer (tokens are fixed for the life of kas), so a
   * client's every request does not hash its token again: the oldest goes when the map is full.
   * Refusals are not kept (a stream of wrong tokens must not push the good ones out).
   */
  private readonly accepted = new Map<string, ProxyAuthResult>();

  constructor(config: StandaloneConfig) {
    this.agents = config.agents.map((a, i) => {
      try {
        return { identity: { agentId: a.id, agentName: a.name, projectId: null }, digest: tokenDigest(readTokenFile(a.token_file)) };
      } catch (err) {
        throw new ConfigError(`standalone.agents.${i}.token_file: ${(err as Error).message}`, { cause: err });
      }
    });
    this.proxyTokens = config.proxy_tokens.map((t, i) => {
      try {
        return { digest: tokenDigest(readTokenFile(t.token_file)), agents: new Set(t.agents), impersonate: impersonationOf(t.access_as) };
      } catch (err) {
        throw new ConfigError(`standalone.proxy_tokens.${i}.token_file: ${(err as Error).message}`, { cause: err });
      }
    });
  }

  async authenticate(token: string): Promise<AgentIdentity | null> {
    // Check every entry, so the time taken does not depend on which one matches.
    let found: AgentIdentity | null = null;
    const presented = tokenDigest(token);
    for (const a of this.agents) if (digestsMatch(presented, a.digest)) found = a.identity;
    return found;
  }

  readonly credentialForms = 'send "Authorization: Bearer pat:<agent-id>:<token>" with a proxy token configured for that agent';

  async authorize(request: ProxyRequestCredentials): Promise<ProxyAuthResult> {
    const bearer = bearerToken(request.rawHeaders);
    if (!bearer.ok) return { ok: false, status: 401, message: bearer.message, reason: bearer.missing ? 'missing' : 'malformed' };
    const cached = this.accepted.get(bearer.token);
    if (cached) return cached;
    const result = this.decide(bearer.token);
    if (result.ok) {
      if (this.accepted.size >= ACCEPTED_CACHE_SIZE) this.accepted.delete(this.accepted.keys().next().value!);
      this.accepted.set(bearer.token, result);
    }
    return result;
  }

  private decide(credential: string): ProxyAuthResult {
    const m = /^pat:(\d{1,18}):(.+)$/.exec(credential);
    if (!m) return { ok: false, status: 401, message: 'expected "Authorization: Bearer pat:<agent-id>:<token>"', reason: 'malformed' };
    const agentId = Number(m[1]);
    const token = m[2]!;
    let entry: ProxyEntry | null = null;
    let known = false;
    const presented = tokenDigest(token);
    for (const t of this.proxyTokens) {
      if (t.agents.has(agentId)) known = true;
      if (digestsMatch(presented, t.digest) && t.agents.has(agentId)) entry = t;
    }
    if (!entry) return { ok: false, status: 401, message: 'unauthorized', reason: known ? 'wrong_token' : 'unknown_agent' };
    return { ok: true, decision: { agentId, impersonate: entry.impersonate, credential: 'pat' } };
  }
}
