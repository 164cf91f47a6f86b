/**
 * What kas decides about a caller: the agent authenticators (agent listener) and the proxy
 * authenticators (Kubernetes API proxy) of each mode implement these.
 */
import type { Impersonation } from '../../protocol/http.js';

/** An authenticated agent. */
export interface AgentIdentity {
  agentId: number;
  agentName: string;
  /** The configuration project (GitLab mode); null in standalone mode. */
  projectId: number | null;
  /** The configuration project's default branch (GitLab mode, from agent_info), where config.yaml is read. */
  defaultBranch?: string;
}

export interface AgentAuthenticator {
  /**
   * Resolves the identity of an agent token, or null when the token is not valid. Never throws for
   * a bad token; throws when the answer cannot be had (the connection is then refused with 503).
   */
  authenticate(token: string): Promise<AgentIdentity | null>;
  /**
   * Checks a connected agent's token again, bypassing caches; null when it is no longer valid (the
   * agent's sessions are then closed with AUTH_REVOKED). Absent when tokens cannot change while kas runs.
   */
  revalidate?(token: string): Promise<AgentIdentity | null>;
  /** How often revalidate runs for each connected session, ms. */
  readonly revalidateIntervalMs?: number;
}

/** A proxy request that may go ahead: to which agent, acting as whom. */
export interface ProxyDecision {
  agentId: number;
  /** null: the agent's own service account acts. */
  impersonate: Impersonation | null;
  /** For metrics: which credential kind was used. */
  credential: 'pat' | 'ci' | 'session_cookie' | 'gitlab_jwt';
}

/**
 * Why a credential was refused, for kas's log only: the client gets one answer for all of them, so
 * it cannot learn which agents or tokens exist.
 */
export type ProxyRefusalReason = 'missing' | 'malformed' | 'unknown_agent' | 'wrong_token' | 'refused_by_gitlab';

export type ProxyAuthResult =
  | { ok: true; decision: ProxyDecision }
  | { ok: false; status: 401 | 403 | 400 | 429 | 503; message: string; reason?: ProxyRefusalReason };

/** The parts of a proxy request that carry credentials. */
export interface ProxyRequestCredentials {
  /** Node's raw header list: [name, value, name, value, ...]. */
  rawHeaders: readonly string[];
  /** The first value of a URL query parameter, or null (the query is parsed only when asked). */
  queryParam(name: string): string | null;
}

export interface ProxyAuthenticator {
  /**
   * The credential forms this mode accepts, shown to a client whose credential was refused (401):
   * a hint of the syntax, nothing about which agents or tokens exist.
   */
  readonly credentialForms: string;
  /** Decides on a proxy request from its headers and URL query; never throws for bad input. */
  authorize(request: ProxyRequestCredentials): Promise<ProxyAuthResult>;
}
