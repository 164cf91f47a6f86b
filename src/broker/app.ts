/**
 * kas's composition root: builds the features from the configuration in an explicit list, starts
 * them in order and stops them in reverse. GitLab mode when the configuration has a `gitlab`
 * section, standalone mode otherwise: the same listeners, proxy and tunnel, different authenticators.
 */
import { BufferBudget } from '../protocol/flow.js';
import { createLogger, type Logger } from '../shared/logger.js';
import type { AgentAuthenticator, ProxyAuthenticator } from './auth/types.js';
import type { KasConfig } from './configuration/schema.js';
import { KubernetesApiProxyServer } from './kubernetes-api/proxy-server.js';
import { KasMetrics } from './observability/metrics.js';
import { ObservabilityServer } from './observability/observability-server.js';
import { StandaloneAuth } from './standalone/standalone-auth.js';
import { GitLabClient } from './gitlab/client.js';
import { GitLabAuth } from './gitlab/gitlab-auth.js';
import { readSecretFile } from './gitlab/secret.js';
import { readTokenFile } from '../shared/secret.js';
import { BUILD_INFO } from '../shared/version.js';
import { readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { ApiServer, type AgentConfigView } from './api/api-server.js';
import { UsageMetrics } from './gitlab/usage-metrics.js';
import { createRedis } from './redis/redis-client.js';
import { AgentRouter } from './routing/agent-router.js';
import { PeerPool } from './routing/peer-pool.js';
import { PrivateApi } from './routing/private-api.js';
import { RedisSharedState, connectionRecord, type ConnectionRecord } from './routing/shared-state.js';
import { FixedWindowLimiter } from './tunnel/rate-limiter.js';
import { AgentListener } from './tunnel/agent-listener.js';
import { AgentConfigurationModule } from './agent-configuration/agent-configuration.js';
import { DirectoryConfigSource } from './agent-configuration/directory-source.js';
import { GitLabConfigSource } from './agent-configuration/gitlab-source.js';
import { AgentRegistry } from './tunnel/agent-registry.js';

export type ListenerName = 'agent' | 'kubernetes_api' | 'api' | 'private_api' | 'observability';

interface Module {
  /** A listener name, or the name of a feature that listens on nothing (its start resolves ''). */
  name: ListenerName | 'usage_metrics' | 'agent_configuration' | 'shared_state';
  start(): Promise<string>;
  /** Stop taking new work and let what runs finish, at most graceMs. */
  drain?(graceMs: number): Promise<void>;
  stop(): Promise<void>;
}

export interface KasAppOptions {
  config: KasConfig;
  logger?: Logger;
}

export class KasApp {
  readonly config: KasConfig;
  readonly logger: Logger;
  readonly metrics = new KasMetrics();
  readonly registry = new AgentRegistry();
  /** Bound "host:port" of each listener, once started. */
  readonly addresses: Partial<Record<ListenerName, string>> = {};
  /** The GitLab client in GitLab mode; null in standalone mode. */
  readonly gitlab: GitLabClient | null;
  /** The agent configuration feature, once it runs (the API for GitLab reports its status). */
  agentConfig: AgentConfigView | null = null;
  /** The agent configuration feature; null without a source (no repository token, no standalone.config_dir). */
  readonly agentConfiguration: AgentConfigurationModule | null;
  private readonly observability: ObservabilityServer;
  private readonly modules: Module[];
  private started: Module[] = [];
  private shuttingDown = false;
  /** Redis-backed state shared with other replicas, while it runs; null for a single replica. */
  private shared: RedisSharedState | null = null;
  private readonly readinessChecks: Array<() => string | null> = [];

  constructor(options: KasAppOptions) {
    const { config } = options;
    this.config = config;
    this.logger = options.logger ?? createLogger({ name: 'kas', level: config.observability.logging.level });
    const mode = config.gitlab ? this.gitlabMode(config.gitlab, config) : null;
    const auth = mode?.auth ?? new StandaloneAuth(config.standalone);
    const agentAuth: AgentAuthenticator = auth;
    const proxyAuth: ProxyAuthenticator = auth;
    this.gitlab = mode?.client ?? null;
    const processBudget = new BufferBudget(config.agent.tunnel.max_process_buffer);
    this.registry.onChange(() => this.metrics.connectedAgents.set(this.registry.agentCount));
    this.metrics.bufferedBytesSource = () => processBudget.used;

    this.readinessChecks.push(() => (this.shuttingDown ? 'shutting down' : null));
    this.observability = new ObservabilityServer(config.observability.listen.address, this.metrics, this.readinessChecks);
    const memoryLimiter = new FixedWindowLimiter();
    const agentListener = new AgentListener({
      listen: config.agent.listen,
      tunnel: config.agent.tunnel,
      authenticator: agentAuth,
      registry: this.registry,
      metrics: this.metrics,
      logger: this.logger.child({ module: 'agent_listener' }),
      processBudget,
      connectionAllowed: (digest) =>
        this.shared ? this.shared.connectionAllowed(digest, config.agent.listen.connections_per_token_per_minute) : Promise.resolve(memoryLimiter.take(digest, config.agent.listen.connections_per_token_per_minute)),
    });
    const instanceName = process.env.POD_NAME ?? hostname();
    const replication = this.replication(config, instanceName);
    const router = new AgentRouter(this.registry, this.metrics, replication?.shared ?? null, replication?.peers ?? null);
    const proxy = new KubernetesApiProxyServer({ config: config.agent.kubernetes_api, corsOrigin: mode?.corsOrigin ?? null, authenticator: proxyAuth, router, metrics: this.metrics, logger: this.logger.child({ module: 'kubernetes_api' }) });
    // Agent configuration files come from GitLab (read with kas's repository token) or standalone.config_dir.
    const configSource = mode
      ? config.gitlab?.repository_token_file ? new GitLabConfigSource(mode.client) : null
      : config.standalone.config_dir ? new DirectoryConfigSource(config.standalone.config_dir) : null;
    if (mode && !configSource) this.logger.warn('gitlab.repository_token_file is not set: agent configuration files are not read');
    const agentConfiguration = configSource
      ? new AgentConfigurationModule({ registry: this.registry, source: configSource, gitlab: mode?.client ?? null, pollPeriodMs: config.agent.configuration.poll_period, metrics: this.metrics, logger: this.logger.child({ module: 'agent_configuration' }) })
      : null;
    this.agentConfiguration = agentConfiguration;
    this.modules = [{ name: 'observability', start: () => this.observability.start(), stop: () => this.observability.stop() }];
    if (replication) {
      // The private API first: its bound address may be what this replica advertises.
      const { privateApi, shared, peers } = replication;
      this.modules.push({
        name: 'private_api',
        start: () => privateApi.start(),
        drain: (g) => privateApi.drain(g),
        stop: async () => {
          await peers.stop();
          await privateApi.stop();
        },
      });
      this.modules.push({
        name: 'shared_state',
        start: async () => {
          shared.setOwnUrl(ownPrivateApiUrl(this.addresses.private_api!));
          await shared.start();
          shared.onGitPush((projectId) => this.agentConfig?.pollProject(projectId));
          this.shared = shared;
          return '';
        },
        drain: () => shared.withdraw(),
        stop: async () => {
          this.shared = null;
          await shared.stop();
        },
      });
    }
    this.modules.push(
      { name: 'agent', start: () => agentListener.start(), drain: (g) => agentListener.drain(g), stop: () => agentListener.stop() },
      { name: 'kubernetes_api', start: () => proxy.start(), drain: (g) => proxy.drain(g), stop: () => proxy.stop() },
    );
    if (agentConfiguration) {
      // After the agent listener (agents register there), stopped before it.
      this.modules.push({
        name: 'agent_configuration',
        start: async () => {
          await agentConfiguration.start();
          this.agentConfig = agentConfiguration;
          return '';
        },
        stop: async () => {
          this.agentConfig = null;
          await agentConfiguration.stop();
        },
      });
    }
    const apiSecretFile = config.api.listen.authentication_secret_file;
    if (apiSecretFile) {
      const api = new ApiServer({
        address: config.api.listen.address,
        secret: readSecretFile('api.listen.authentication_secret_file', apiSecretFile),
        connections: async (agentIds, projectIds) => {
          if (this.shared?.redisHealthy) {
            try {
              return await this.shared.connections(agentIds, projectIds);
            } catch (err) {
              this.logger.warn({ err }, 'Redis failed: answering connected_agents for this replica only');
            }
          }
          return localConnections(this.registry, instanceName, agentIds, projectIds);
        },
        gitPush: async (projectId) => {
          if (this.shared) {
            try {
              await this.shared.publishGitPush(projectId);
              return;
            } catch (err) {
              this.logger.warn({ err }, 'Redis failed: the git push notification reaches this replica only');
            }
          }
          this.agentConfig?.pollProject(projectId);
        },
        gitlab: this.gitlab,
        agentConfig: () => this.agentConfig,
        logger: this.logger.child({ module: 'api' }),
      });
      this.modules.push({ name: 'api', start: () => api.start(), stop: () => api.stop() });
    }
    const usage = mode?.usage;
    if (usage) {
      this.modules.push({
        name: 'usage_metrics',
        start: async () => {
          usage.start(config.observability.usage_report_period);
          return '';
        },
        stop: () => usage.stop(),
      });
    }
  }

  /** Several replicas: Redis state, the private API other replicas route through, sessions to them. */
  private replication(config: KasConfig, instanceName: string): { shared: RedisSharedState; peers: PeerPool; privateApi: PrivateApi } | null {
    if (!config.redis) return null;
    const secretFile = config.private_api.listen.authentication_secret_file;
    if (!secretFile) throw new Error('private_api.listen.authentication_secret_file: required with a redis section (replicas authenticate each other with it)');
    const secret = readSecretFile('private_api.listen.authentication_secret_file', secretFile);
    const redis = createRedis(config.redis);
    const shared = new RedisSharedState({
      redis,
      subscriber: redis.duplicate(),
      prefix: config.redis.key_prefix,
      ownUrl: '',
      instanceName,
      ttlMs: config.agent.redis_conn_info_ttl,
      refreshMs: config.agent.redis_conn_info_refresh,
      registry: this.registry,
      logger: this.logger.child({ module: 'shared_state' }),
      metrics: this.metrics,
    });
    const peers = new PeerPool(secret, config.agent.tunnel, instanceName, this.logger.child({ module: 'peers' }));
    const privateApi = new PrivateApi({ address: config.private_api.listen.address, secret, tunnel: config.agent.tunnel, registry: this.registry, agentWaitMs: Math.min(5000, config.agent.kubernetes_api.agent_wait_timeout), logger: this.logger.child({ module: 'private_api' }) });
    if (config.redis.ready_requires_redis) this.readinessChecks.push(() => (this.shared && !this.shared.redisHealthy ? 'Redis is unreachable' : null));
    return { shared, peers, privateApi };
  }

  /** GitLab mode: the REST client and the authenticators that ask GitLab. Errors name the bad key. */
  private gitlabMode(g: NonNullable<KasConfig['gitlab']>, config: KasConfig): { client: GitLabClient; auth: GitLabAuth; corsOrigin: string; usage: UsageMetrics } {
    const secret = readSecretFile('gitlab.authentication_secret_file', g.authentication_secret_file);
    const apiSecretFile = config.api.listen.authentication_secret_file;
    const caPem = g.ca_certificate_file ? readFileOf('gitlab.ca_certificate_file', g.ca_certificate_file) : undefined;
    let repositoryToken: string | undefined;
    if (g.repository_token_file) {
      try {
        repositoryToken = readTokenFile(g.repository_token_file);
      } catch (err) {
        throw new Error(`gitlab.repository_token_file: ${(err as Error).message}`, { cause: err });
      }
    }
    const client = new GitLabClient({
      address: g.address,
      secret,
      caPem,
      repositoryToken,
      rateLimit: { refillPerSecond: g.api_rate_limit.refill_rate_per_second, bucketSize: g.api_rate_limit.bucket_size },
      timeoutMs: g.request_timeout,
      userAgent: `gitlab-agent-ts-kas/${BUILD_INFO.version}`,
    });
    const usage = new UsageMetrics(client, this.logger.child({ module: 'usage_metrics' }));
    const auth = new GitLabAuth({
      client,
      onProxyUse: (decision, userId) => usage.record(decision, userId),
      logger: this.logger.child({ module: 'gitlab_auth' }),
      infoCacheTtlMs: config.agent.info_cache_ttl,
      infoCacheErrorTtlMs: config.agent.info_cache_error_ttl,
      proxyCacheTtlMs: config.agent.kubernetes_api.allowed_agent_cache_ttl,
      proxyCacheErrorTtlMs: config.agent.kubernetes_api.allowed_agent_cache_error_ttl,
      gitlabToKasSecret: apiSecretFile ? readSecretFile('api.listen.authentication_secret_file', apiSecretFile) : secret,
      sharedRefusals: () => this.shared,
    });
    return { client, auth, corsOrigin: new URL(g.external_url ?? g.address).origin, usage };
  }

  async start(): Promise<void> {
    for (const m of this.modules) {
      const address = await m.start();
      this.started.push(m);
      if (address === '' || m.name === 'usage_metrics' || m.name === 'agent_configuration' || m.name === 'shared_state') continue;
      this.addresses[m.name] = address;
      this.logger.info({ listener: m.name, address }, 'listening');
    }
    this.observability.setReady(true);
  }

  /** Graceful shutdown: not ready, drain agents and in-flight requests (at most graceMs), then stop. */
  async shutdown(graceMs = this.config.agent.tunnel.drain_grace): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.logger.info({ graceMs }, 'shutting down');
    await Promise.all(this.started.map((m) => m.drain?.(graceMs)));
    await this.stop();
  }

  /** Stops every module at once, in reverse order of starting. */
  async stop(): Promise<void> {
    this.shuttingDown = true;
    const started = this.started.reverse();
    this.started = [];
    for (const m of started) await m.stop();
    this.gitlab?.close();
  }
}

function readFileOf(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`${key}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** This replica's own answer to connected_agents (no Redis, or Redis down). */
function localConnections(registry: AgentRegistry, instance: string, agentIds: number[], projectIds: number[]): ConnectionRecord[] {
  const agents = new Set(agentIds);
  const projects = new Set(projectIds);
  return registry
    .connections()
    .filter((c) => agents.has(c.identity.agentId) || (c.identity.projectId !== null && projects.has(c.identity.projectId)))
    .map((c) => connectionRecord(c, instance));
}

/**
 * How other replicas reach this one: OWN_PRIVATE_API_URL, else a local address in OWN_PRIVATE_API_CIDR,
 * else the bound private API address when it is not a wildcard.
 */
export function ownPrivateApiUrl(bound: string, env: NodeJS.ProcessEnv = process.env): string {
  if (env.OWN_PRIVATE_API_URL) return env.OWN_PRIVATE_API_URL;
  const port = bound.slice(bound.lastIndexOf(':') + 1);
  if (env.OWN_PRIVATE_API_CIDR) {
    const ip = addressInCidr(env.OWN_PRIVATE_API_CIDR);
    if (!ip) throw new Error(`OWN_PRIVATE_API_CIDR: no local IPv4 address in ${env.OWN_PRIVATE_API_CIDR}`);
    return `ws://${ip}:${port}`;
  }
  const host = bound.slice(0, bound.lastIndexOf(':'));
  if (host === '0.0.0.0' || host === '[::]' || host === '::') throw new Error('private_api.listen.address is a wildcard: set OWN_PRIVATE_API_URL or OWN_PRIVATE_API_CIDR so other replicas can reach this one');
  return `ws://${host}:${port}`;
}

function addressInCidr(cidr: string): string | null {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (!m) return null;
  const toInt = (parts: string[]) => parts.reduce((acc, p) => (acc << 8) + Number(p), 0) >>> 0;
  const base = toInt(m.slice(1, 5));
  const bits = Number(m[5]);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family !== 'IPv4') continue;
      if (((toInt(a.address.split('.')) & mask) >>> 0) === ((base & mask) >>> 0)) return a.address;
    }
  }
  return null;
}
