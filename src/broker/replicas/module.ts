/**
 * Replicas: the state kas replicas share and the private API requests are routed through. Without
 * a redis section kas is a single replica and the state lives in memory; with one, Redis holds it
 * and other replicas connect to this one's private API (authenticated with its own secret).
 */
import { readSecretFile } from '../configuration/secret-file.js';
import { ConfigError } from '../configuration/config-error.js';
import { kubernetesApiConfig } from '../kubernetes-api/config.js';
import { defineModule } from '../module.js';
import { PeerPool } from '../routing/peer-pool.js';
import { PrivateApi } from '../routing/private-api.js';
import { agentListenerConfig } from '../tunnel/config.js';
import { privateApiConfig, redisConfig, replicaEntriesConfig } from './config.js';
import { MemoryReplicaState } from './memory-replica-state.js';
import { ReplicaMetrics } from './metrics.js';
import { ownPrivateApiUrl } from './own-url.js';
import { createRedis } from './redis-client.js';
import { RedisReplicaState } from './redis-replica-state.js';
import { PEERS, REPLICA_STATE } from './service.js';

export const replicasModule = defineModule({
  name: 'replicas',
  owns: [redisConfig, privateApiConfig, replicaEntriesConfig],
  reads: [agentListenerConfig, kubernetesApiConfig],
  create(ctx) {
    const { config, services } = ctx;
    if (!config.redis) {
      services.provide(REPLICA_STATE, new MemoryReplicaState(ctx.agents, ctx.instanceName));
      services.provide(PEERS, null);
      return null;
    }
    const secretFile = config.private_api.listen.authentication_secret_file;
    if (!secretFile) throw new ConfigError('private_api.listen.authentication_secret_file: required with a redis section (replicas authenticate each other with it)');
    const secret = readSecretFile('private_api.listen.authentication_secret_file', secretFile);
    const redis = createRedis(config.redis);
    const state = new RedisReplicaState({
      redis,
      subscriber: redis.duplicate(),
      prefix: config.redis.key_prefix,
      instanceName: ctx.instanceName,
      ttlMs: config.agent.redis_conn_info_ttl,
      refreshMs: config.agent.redis_conn_info_refresh,
      registry: ctx.agents,
      logger: ctx.logger,
      metrics: new ReplicaMetrics(ctx.metrics),
    });
    const peers = new PeerPool(secret, config.agent.tunnel, ctx.instanceName, ctx.logger.child({ component: 'peers' }));
    const privateApi = new PrivateApi({
      address: config.private_api.listen.address,
      secret,
      tunnel: config.agent.tunnel,
      registry: ctx.agents,
      agentWaitMs: Math.min(5000, config.agent.kubernetes_api.agent_wait_timeout),
      logger: ctx.logger.child({ component: 'private_api' }),
    });
    services.provide(REPLICA_STATE, state);
    services.provide(PEERS, peers);
    const requiresRedis = config.redis.ready_requires_redis;
    let address = '';
    return {
      listener: { name: 'private_api', address: () => address },
      // The private API first: its bound address may be what this replica advertises.
      async start() {
        address = await privateApi.start();
        await state.start(ownPrivateApiUrl(address));
      },
      async drain(graceMs) {
        await Promise.all([privateApi.drain(graceMs), state.withdraw()]);
      },
      async stop() {
        await state.stop();
        await peers.stop();
        await privateApi.stop();
      },
      readiness: () => (requiresRedis && !state.healthy ? 'Redis is unreachable' : null),
    };
  },
});
