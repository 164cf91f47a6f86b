/** Who may connect as an agent and who may use the proxy: offered by the gitlab or the standalone module. */
import { serviceKey } from '../services.js';
import type { AgentAuthenticator, ProxyAuthenticator } from './types.js';

export interface KasAuth {
  agents: AgentAuthenticator;
  proxy: ProxyAuthenticator;
  /** The origin browsers may call the proxy from (GitLab's), or null (standalone: no CORS). */
  corsOrigin: string | null;
}

export const AUTH = serviceKey<KasAuth>('auth');
