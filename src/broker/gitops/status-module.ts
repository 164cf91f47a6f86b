/**
 * The GitOps status module (kas): serves the `gitops_status` streams agentk opens after each apply,
 * keeps the latest result per agent and manifest project, answers
 * `GET /api/v1/agents/{agent_id}/gitops` on the API for GitLab, counts `gitops_sync` in GitLab's
 * usage metrics, and exports `kas_gitops_*` metrics. Must come after agent_listener (AGENT_STREAMS)
 * and before api (API_ROUTES are read when the API is created).
 */
import { GITOPS_STATUS_STREAM } from '../../protocol/gitops-status.js';
import { API_ROUTES } from '../api/routes.js';
import { GITLAB } from '../gitlab/module.js';
import { defineModule } from '../module.js';
import { serviceKey } from '../services.js';
import { AGENT_STREAMS } from '../tunnel/agent-streams.js';
import { GitopsStatusStore } from './status.js';
import { gitopsStatusConfig } from './status-config.js';
import { GitopsStatusMetrics } from './status-metrics.js';

/** The latest GitOps apply results (and a hook for each new one). */
export const GITOPS_STATUS = serviceKey<GitopsStatusStore>('gitops_status');

export const gitopsStatusModule = defineModule({
  name: 'gitops_status',
  owns: [gitopsStatusConfig],
  create(ctx) {
    const limits = ctx.config.agent.gitops_status;
    const store = new GitopsStatusStore({ maxResults: limits.max_results, maxBytes: limits.max_bytes }, new GitopsStatusMetrics(ctx.metrics));
    ctx.services.get(AGENT_STREAMS).register(GITOPS_STATUS_STREAM, (stream, connection, logger) => store.serve(stream, connection, logger));
    ctx.services.find(API_ROUTES)?.add((app) => store.routes(app));
    const gitlab = ctx.services.find(GITLAB);
    // One sync = one apply that reached the cluster (dry runs and reconciles of nothing new included).
    if (gitlab) {
      store.onStatus((_agentId, status) => {
        if (status.dry_run === 'none') gitlab.usage.increment('gitops_sync');
      });
    }
    ctx.services.provide(GITOPS_STATUS, store);
    return { start: async () => undefined, stop: async () => undefined };
  },
});
