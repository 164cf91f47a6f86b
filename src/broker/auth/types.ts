/**
 * What kas decides about a caller: the agent authenticators (agent listener) and the proxy
 * authenticators (Kubernetes API proxy) of each mode implement these.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Impersonation } from '../../protocol/http.js';

/** An authenticated agent. */
export interface AgentIdentity {
  agentId: number;
  agentName: string;
  /** The configuration project (GitLab mode); null in standalone mode. */
  projectId: number | null;
}

export interface AgentAuthenticator {
  /** Resolves the identity of an agent token, or null when the token is not valid. Never throws for a bad token. */
  authenticate(token: string): Promise<AgentIdentity | null>;
}

/** A proxy request that may go ahead: to which agent, acting as whom. */
export interface ProxyDecision {
  agentId: number;
  /** null: the agent's own service account acts. */
  impersonate: Impersonation | null;
  /** For metrics: which credential kind was used. */
  credential: 'pat' | 'ci' | 'session_cookie' | 'gitlab_jwt';
}

export type ProxyAuthResult =
  | { ok: true; decision: ProxyDecision }
  | { ok: false; status: 401 | 403 | 400 | 429 | 503; message: string };

/** The parts of a proxy request that carry credentials. */
export interface ProxyRequestCredentials {
  headers: IncomingHttpHeaders;
  rawHeaders: readonly string[];
  query: URLSearchParams;
}

export interface ProxyAuthenticator {
  /** Decides on a proxy request from its headers and URL query. */
  authorize(request: ProxyRequestCredentials): Promise<ProxyAuthResult>;
}
