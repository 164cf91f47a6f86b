/**
 * The API for GitLab (api listener, fastify): which agents are connected, git-push notifications,
 * the agent configuration files of a project, server info. Every call carries a JWT GitLab signed
 * with the shared secret (HS256/384/512, aud gitlab-kas); anything else is 401. Errors are
 * `{"error": {"code", "message"}}`. docs/api.md describes every endpoint.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { listenFastify } from '../fastify-listen.js';
import type { Logger } from '../../shared/logger.js';
import { BUILD_INFO } from '../../shared/version.js';
import type { GitLabClient } from '../gitlab/client.js';
import { verifyForKas } from '../gitlab/jwt.js';
import type { ConnectionRecord } from '../replicas/connection-record.js';
import { apiError, ids, type ApiRouteRegistration } from './routes.js';

/** What the agent configuration feature offers the API (absent when it is not running). */
export interface AgentConfigView {
  pollProject(projectId: number): void;
  status(agentId: number): unknown;
}

export interface ApiServerDeps {
  address: string;
  secret: Buffer;
  /** The connections of the agents asked for, on every replica (from Redis) or on this one. */
  connections: (agentIds: number[], projectIds: number[]) => Promise<ConnectionRecord[]>;
  /** A git push happened in a project: every replica re-reads the configurations it concerns. */
  gitPush: (projectId: number, fullPath: string | null) => Promise<void>;
  gitlab: GitLabClient | null;
  agentConfig: () => AgentConfigView | null;
  /** The endpoints of features (API_ROUTES), added after the built-in ones. */
  routes?: readonly ApiRouteRegistration[];
  logger: Logger;
}

const AGENTS_DIR = '.gitlab/agents';
const CONFIG_FILE = /^\.gitlab\/agents\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/config\.yaml$/;

export class ApiServer {
  private readonly app: FastifyInstance;
  private readonly deps: ApiServerDeps;
  boundAddress = '';

  constructor(deps: ApiServerDeps) {
    this.deps = deps;
    this.app = Fastify({ logger: false, bodyLimit: 64 * 1024, maxParamLength: 200 });
    this.app.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) => {
      const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
      if (status === 500) deps.logger.error({ err }, 'API for GitLab failed');
      return apiError(reply, status, status === 500 ? 'INTERNAL' : 'BAD_REQUEST', status === 500 ? 'internal error' : err.message);
    });
    this.app.setNotFoundHandler((_req, reply) => apiError(reply, 404, 'NOT_FOUND', 'no such endpoint'));
    this.app.addHook('onRequest', async (req, reply) => {
      const header = req.headers.authorization;
      const m = typeof header === 'string' ? /^Bearer ([A-Za-z0-9_\-.]+)$/.exec(header) : null;
      const claims = m ? await verifyForKas(m[1]!, deps.secret) : null;
      if (!claims) return apiError(reply, 401, 'UNAUTHENTICATED', 'a valid JWT signed by GitLab is required');
    });

    this.app.get('/api/v1/connected_agents', async (req, reply) => {
      const q = req.query as Record<string, unknown>;
      const agentIds = ids(q.agent_id);
      const projectIds = ids(q.project_id);
      if (!agentIds || !projectIds) return apiError(reply, 400, 'BAD_REQUEST', 'agent_id and project_id must be integers');
      if (agentIds.length === 0 && projectIds.length === 0) return apiError(reply, 400, 'BAD_REQUEST', 'give agent_id or project_id');
      const byAgent = new Map<number, { agent_id: number; project_id: number | null; configuration?: unknown; connections: unknown[] }>();
      for (const c of await deps.connections(agentIds, projectIds)) {
        let entry = byAgent.get(c.agent_id);
        if (!entry) {
          entry = { agent_id: c.agent_id, project_id: c.project_id, connections: [] };
          const status = deps.agentConfig()?.status(c.agent_id);
          if (status !== undefined && status !== null) entry.configuration = status;
          byAgent.set(c.agent_id, entry);
        }
        entry.connections.push({ connection_id: c.connection_id, kas_instance: c.kas_instance, connected_at: c.connected_at, agent_meta: c.agent_meta });
      }
      return { agents: [...byAgent.values()] };
    });

    this.app.post('/api/v1/git_push_event', async (req, reply) => {
      const body = req.body as { project?: { id?: unknown; full_path?: unknown } } | undefined;
      const idValue = body?.project?.id;
      const projectId = typeof idValue === 'number' ? idValue : typeof idValue === 'string' && /^\d{1,18}$/.test(idValue) ? Number(idValue) : NaN;
      if (!Number.isSafeInteger(projectId) || projectId <= 0) return apiError(reply, 400, 'BAD_REQUEST', 'body must be {"project": {"id": <integer>, "full_path": "..."}}');
      // full_path is optional (older callers send the id only); a malformed one is dropped, not refused.
      const pathValue = body?.project?.full_path;
      const fullPath = typeof pathValue === 'string' && pathValue.length > 0 && pathValue.length <= 1024 ? pathValue : null;
      await deps.gitPush(projectId, fullPath);
      return reply.code(204).send();
    });

    this.app.get('/api/v1/agent_config_files', async (req, reply) => {
      const projectIds = ids((req.query as Record<string, unknown>).project_id);
      if (!projectIds || projectIds.length !== 1) return apiError(reply, 400, 'BAD_REQUEST', 'give exactly one integer project_id');
      if (!deps.gitlab) return apiError(reply, 404, 'NOT_FOUND', 'agent configuration files come from GitLab; kas runs in standalone mode');
      const entries = await deps.gitlab.tree(projectIds[0]!, AGENTS_DIR, null);
      const files = entries.filter((e) => e.type === 'blob').map((e) => CONFIG_FILE.exec(e.path)).filter((m): m is RegExpExecArray => m !== null);
      return { config_files: files.map((m) => ({ agent_name: m[1]!, path: m[0] })) };
    });

    this.app.get('/api/v1/server_info', async () => ({ version: BUILD_INFO.version, commit: BUILD_INFO.commit, build_time: BUILD_INFO.buildTime }));
    for (const register of deps.routes ?? []) register(this.app);
  }

  async start(): Promise<string> {
    this.boundAddress = await listenFastify(this.app, this.deps.address);
    return this.boundAddress;
  }

  async stop(): Promise<void> {
    await this.app.close();
  }
}
