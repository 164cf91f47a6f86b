/**
 * Workload health: agents send a summary of what is unhealthy in their cluster on `workload_health`
 * streams; kas keeps the latest per agent and serves it at `GET /api/v1/agents/{agent_id}/health`.
 * With a redis section the summaries are also in Redis, so every replica answers for every agent.
 */
import { WORKLOAD_HEALTH_STREAM } from '../../protocol/workload-health.js';
import { API_ROUTES, apiError, oneId } from '../api/routes.js';
import { defineModule } from '../module.js';
import { redisConfig } from '../replicas/config.js';
import { FeatureRedis } from '../replicas/feature-redis.js';
import { REPLICA_STATE } from '../replicas/service.js';
import { AGENT_STREAMS } from '../tunnel/agent-streams.js';
import { workloadHealthConfig } from './config.js';
import { HealthStore } from './health-store.js';
import { WorkloadHealthMetrics } from './metrics.js';
import { RedisHealthMirror } from './redis-health-mirror.js';
import { WorkloadHealth } from './workload-health.js';

const SWEEP_INTERVAL_MS = 60_000;

export const workloadHealthModule = defineModule({
  name: 'workload_health',
  owns: [workloadHealthConfig],
  reads: [redisConfig],
  create(ctx) {
    const cfg = ctx.config.agent.workload_health;
    let store: HealthStore | null = null;
    const metrics = new WorkloadHealthMetrics(ctx.metrics, () => ({ agents: store?.agents ?? 0, bytes: store?.totalBytes ?? 0 }));
    store = new HealthStore({
      maxAgents: cfg.max_agents,
      maxBytes: cfg.max_bytes,
      retentionMs: cfg.retention,
      isConnected: (agentId) => ctx.agents.connections(agentId).length > 0,
      metrics,
    });
    const redis = FeatureRedis.fromConfig(ctx.config.redis, { logger: ctx.logger, what: 'workload health', onError: () => metrics.redisErrors.inc() });
    const mirror = redis ? new RedisHealthMirror(redis, cfg.retention) : null;
    const health = new WorkloadHealth({ store, mirror, registry: ctx.agents, presence: ctx.services.get(REPLICA_STATE).presence, metrics });

    ctx.services.get(AGENT_STREAMS).register(WORKLOAD_HEALTH_STREAM, (stream, connection, logger) => health.receive(stream, connection, logger));
    ctx.services.get(API_ROUTES).add((app) => {
      app.get('/api/v1/agents/:agent_id/health', async (req, reply) => {
        const agentId = oneId((req.params as { agent_id?: unknown }).agent_id);
        if (agentId === null) return apiError(reply, 400, 'BAD_REQUEST', 'agent_id must be a positive integer');
        const view = await health.view(agentId);
        if (!view) return apiError(reply, 404, 'NOT_FOUND', `agent ${agentId} has not been seen`);
        return view;
      });
    });

    let sweeper: NodeJS.Timeout | null = null;
    return {
      async start() {
        // Commands fail fast while Redis is down (the mirror then counts and logs); connecting is not required to start.
        if (redis) await redis.connect();
        health.start();
        sweeper = setInterval(() => health.sweep(), SWEEP_INTERVAL_MS);
        sweeper.unref();
      },
      async stop() {
        if (sweeper) clearInterval(sweeper);
        await health.stop();
        if (redis) await redis.close();
      },
    };
  },
});
