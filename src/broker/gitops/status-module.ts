/**
 * The GitOps status module (kas): serves the `gitops_status` streams agentk opens after each apply,
 * keeps the latest result per agent and manifest project, answers
 * `GET /api/v1/agents/{agent_id}/gitops` on the API for GitLab, counts `gitops_sync` in GitLab's
 * usage metrics, publishes each result in the cluster events stream (source `gitops`), and exports
 * `kas_gitops_*` metrics. With a redis section the results are also kept in Redis (its own connection)
 * so that every replica answers for every agent. Must come after agent_listener (AGENT_STREAMS) and cluster_events, and
 * before api (API_ROUTES are read when the API is created).
 */
import { GITOPS_STATUS_STREAM } from '../../protocol/gitops-status.js';
import { API_ROUTES } from '../api/routes.js';
import { CLUSTER_EVENTS } from '../cluster-events/service.js';
import { GITLAB } from '../gitlab/module.js';
import { defineModule } from '../module.js';
import { redisConfig } from '../replicas/config.js';
import { FeatureRedis } from '../replicas/feature-redis.js';
import { serviceKey } from '../services.js';
import { AGENT_STREAMS } from '../tunnel/agent-streams.js';
import { GitopsStatusStore } from './status.js';
import { statusEvents } from './status-events.js';
import { gitopsStatusConfig } from './status-config.js';
import { GitopsStatusMetrics } from './status-metrics.js';
import { RedisGitopsStatus } from './status-redis.js';

/** The latest GitOps apply results (and a hook for each new one). */
export const GITOPS_STATUS = serviceKey<GitopsStatusStore>('gitops_status');

export const gitopsStatusModule = defineModule({
  name: 'gitops_status',
  owns: [gitopsStatusConfig],
  reads: [redisConfig],
  create(ctx) {
    const limits = ctx.config.agent.gitops_status;
    const metrics = new GitopsStatusMetrics(ctx.metrics);
    const redis = FeatureRedis.fromConfig(ctx.config.redis, { logger: ctx.logger, what: 'GitOps status', onError: () => metrics.redisErrors.inc() });
    const shared = redis ? { redis: new RedisGitopsStatus(redis, { maxResults: limits.max_results, maxBytes: limits.max_bytes, ttlMs: limits.redis_ttl }), logger: ctx.logger } : null;
    const store = new GitopsStatusStore({ maxResults: limits.max_results, maxBytes: limits.max_bytes }, metrics, shared);
    ctx.services.get(AGENT_STREAMS).register(GITOPS_STATUS_STREAM, (stream, connection, logger) => store.serve(stream, connection, logger));
    ctx.services.find(API_ROUTES)?.add((app) => store.routes(app));
    const gitlab = ctx.services.find(GITLAB);
    // One sync = one apply that reached the cluster (dry runs and reconciles of nothing new included).
    if (gitlab) {
      store.onStatus((_agentId, status) => {
        if (status.dry_run === 'none') gitlab.usage.increment('gitops_sync');
      });
    }
    const events = ctx.services.find(CLUSTER_EVENTS);
    if (events) {
      store.onStatus((agentId, status) => {
        for (const event of statusEvents(status)) events.publish(agentId, event);
      });
    }
    ctx.services.provide(GITOPS_STATUS, store);
    return {
      async start() {
        if (redis) await redis.connect();
      },
      async stop() {
        await store.flush();
        if (redis) await redis.close();
      },
    };
  },
});
