/**
 * Flux reconcile-on-push, kas half: serves the `flux_git_push` streams agentk opens (push-hub.ts)
 * and feeds them the git pushes of every replica (REPLICA_STATE's fan-out). In GitLab mode each
 * followed project is checked with GitLab (project-access.ts); in standalone mode projects are
 * matched by the path the git_push_event names. Comes after agent_listener (AGENT_STREAMS).
 */
import { FLUX_GIT_PUSH_STREAM } from '../../protocol/flux.js';
import { GITLAB } from '../gitlab/module.js';
import { defineModule } from '../module.js';
import { REPLICA_STATE } from '../replicas/service.js';
import { AGENT_STREAMS } from '../tunnel/agent-streams.js';
import { fluxConfig } from './config.js';
import { FluxMetrics } from './metrics.js';
import { GitLabProjectAccess } from './project-access.js';
import { FluxPushHub } from './push-hub.js';

export const fluxModule = defineModule({
  name: 'flux',
  owns: [fluxConfig],
  create(ctx) {
    const config = ctx.config.agent.flux;
    if (!config.enabled) return null;
    const gitlab = ctx.services.find(GITLAB);
    const hub = new FluxPushHub({
      access: gitlab ? new GitLabProjectAccess(gitlab.client, { okTtlMs: config.project_access_cache_ttl, refusalTtlMs: config.project_access_refusal_cache_ttl }) : null,
      heartbeatMs: config.heartbeat_interval,
      maxProjects: config.max_projects_per_stream,
      recheckMs: config.project_access_cache_ttl,
      retryMs: config.project_access_refusal_cache_ttl,
      metrics: new FluxMetrics(ctx.metrics),
      logger: ctx.logger,
    });
    ctx.services.get(REPLICA_STATE).gitPush.subscribeEvents((event) => hub.push(event));
    ctx.services.get(AGENT_STREAMS).register(FLUX_GIT_PUSH_STREAM, (stream, connection, logger) => hub.serve(stream, connection, logger));
    return {
      start: () => Promise.resolve(),
      drain: () => {
        hub.stop();
        return Promise.resolve();
      },
      stop: () => {
        hub.stop();
        return Promise.resolve();
      },
    };
  },
});
