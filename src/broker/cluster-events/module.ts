/**
 * Cluster events, kas half: serves agentk's `agent_events` streams, keeps a bounded ring of events
 * per agent under a process-wide byte budget, adds the agents' connects and disconnects, offers
 * CLUSTER_EVENTS to other modules and serves the events on the API for GitLab. With a redis section
 * the events are shared by every replica (redis-fan-out.ts).
 */
import { API_ROUTES } from '../api/routes.js';
import { TokenBucket } from '../gitlab/token-bucket.js';
import { defineModule } from '../module.js';
import { redisConfig } from '../replicas/config.js';
import { createRedis } from '../replicas/redis-client.js';
import { AGENT_STREAMS } from '../tunnel/agent-streams.js';
import { AGENT_EVENTS_STREAM } from '../../protocol/cluster-events.js';
import { serveAgentEvents } from './agent-stream.js';
import { clusterEventsConfig } from './config.js';
import { followConnectivity } from './connectivity.js';
import { EventStore } from './event-store.js';
import { MemoryFanOut, type EventFanOut } from './fan-out.js';
import { ClusterEventsHub } from './hub.js';
import { ClusterEventsMetrics } from './metrics.js';
import { RedisFanOut } from './redis-fan-out.js';
import { eventRoutes } from './routes.js';
import { CLUSTER_EVENTS } from './service.js';

export const clusterEventsModule = defineModule({
  name: 'cluster_events',
  owns: [clusterEventsConfig],
  reads: [redisConfig],
  create(ctx) {
    const cfg = ctx.config.agent.events;
    if (!cfg.enabled) return null;
    const metrics = new ClusterEventsMetrics(ctx.metrics);
    const store = new EventStore({ ringSize: cfg.ring_size, maxBytes: cfg.max_memory, metrics });
    let fanOut: EventFanOut;
    if (ctx.config.redis) {
      const redis = createRedis(ctx.config.redis);
      fanOut = new RedisFanOut({ redis, subscriber: redis.duplicate(), prefix: ctx.config.redis.key_prefix, ringSize: cfg.ring_size, ttlMs: cfg.redis_ttl, metrics, logger: ctx.logger });
    } else {
      fanOut = new MemoryFanOut();
    }
    const hub = new ClusterEventsHub({ store, fanOut, metrics, logger: ctx.logger });
    ctx.services.provide(CLUSTER_EVENTS, hub);

    // kas's own limit of what an agent sends, whatever its configuration says: one bucket per connected agent.
    const buckets = new Map<number, TokenBucket>();
    ctx.agents.onChange((agentId) => {
      if (ctx.agents.connections(agentId).length === 0) buckets.delete(agentId);
    });
    const allow = (agentId: number): boolean => {
      let bucket = buckets.get(agentId);
      if (!bucket) {
        bucket = new TokenBucket(cfg.rate_limit, cfg.burst);
        buckets.set(agentId, bucket);
      }
      return bucket.tryTake();
    };
    ctx.services.get(AGENT_STREAMS).register(AGENT_EVENTS_STREAM, (stream, connection, logger) => serveAgentEvents({ events: hub, metrics, allow }, stream, connection, logger));
    ctx.services.get(API_ROUTES).add(
      eventRoutes({ hub, metrics, logger: ctx.logger, watchBuffer: cfg.watch_buffer, heartbeatMs: cfg.watch_heartbeat, maxWatchers: cfg.max_watchers }),
    );
    let unfollow: (() => void) | null = null;
    return {
      async start() {
        await hub.start();
        unfollow = followConnectivity(ctx.agents, hub, ctx.instanceName);
      },
      async stop() {
        unfollow?.();
        await hub.stop();
      },
    };
  },
});
