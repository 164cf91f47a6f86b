/**
 * GitLab mode (a gitlab section): the REST client, authenticators that ask GitLab (with caches, and
 * refusals shared between replicas), and usage reporting. Every file is read here, so a missing or
 * malformed one is a configuration error that names its key.
 */
import { readFileSync } from 'node:fs';
import { readTokenFile } from '../../shared/tokens.js';
import { BUILD_INFO } from '../../shared/version.js';
import { apiConfig } from '../api/config.js';
import { AUTH } from '../auth/service.js';
import { ConfigError } from '../configuration/config-error.js';
import { readSecretFile } from '../configuration/secret-file.js';
import { defineModule } from '../module.js';
import { REPLICA_STATE } from '../replicas/service.js';
import { serviceKey } from '../services.js';
import { GitLabClient } from './client.js';
import { agentInfoCacheConfig, gitlabConfig, proxyAuthCacheConfig, usageMetricsConfig } from './config.js';
import { GitLabAuth } from './gitlab-auth.js';
import { AgentEvents } from './agent-events.js';
import { UsageMetrics } from './usage-metrics.js';

export interface GitLabMode {
  client: GitLabClient;
  usage: UsageMetrics;
  /** Agent events (registrations, proxy users) for GitLab's `agent_events`. */
  events: AgentEvents;
}

/** The GitLab client and usage counters; absent in standalone mode. */
export const GITLAB = serviceKey<GitLabMode>('gitlab');

function readFileOf(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${key}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

function readRepositoryToken(path: string | undefined): string | undefined {
  if (!path) return undefined;
  try {
    return readTokenFile(path);
  } catch (err) {
    throw new ConfigError(`gitlab.repository_token_file: ${(err as Error).message}`, { cause: err });
  }
}

export const gitlabModule = defineModule({
  name: 'gitlab',
  owns: [gitlabConfig, agentInfoCacheConfig, proxyAuthCacheConfig],
  reads: [apiConfig, usageMetricsConfig],
  create(ctx) {
    const { config, services } = ctx;
    const g = config.gitlab;
    if (!g) return null;
    const secret = readSecretFile('gitlab.authentication_secret_file', g.authentication_secret_file);
    const apiSecretFile = config.api.listen.authentication_secret_file;
    const client = new GitLabClient({
      address: g.address,
      secret,
      caPem: g.ca_certificate_file ? readFileOf('gitlab.ca_certificate_file', g.ca_certificate_file) : undefined,
      repositoryToken: readRepositoryToken(g.repository_token_file),
      rateLimit: { refillPerSecond: g.api_rate_limit.refill_rate_per_second, bucketSize: g.api_rate_limit.bucket_size },
      timeoutMs: g.request_timeout,
      userAgent: `gitlab-agent-ts-kas/${BUILD_INFO.version}`,
    });
    const usage = new UsageMetrics(client, ctx.logger.child({ component: 'usage_metrics' }));
    const events = new AgentEvents(client, ctx.logger.child({ component: 'agent_events' }), config.observability.usage_report_max_events, ctx.metrics);
    const refusals = services.get(REPLICA_STATE).refusals;
    const auth = new GitLabAuth({
      client,
      onProxyUse: (decision, userId, projectId) => {
        usage.record(decision, userId);
        events.proxyUser(decision, userId, projectId);
      },
      logger: ctx.logger,
      infoCacheTtlMs: config.agent.info_cache_ttl,
      infoCacheErrorTtlMs: config.agent.info_cache_error_ttl,
      proxyCacheTtlMs: config.agent.kubernetes_api.allowed_agent_cache_ttl,
      proxyCacheErrorTtlMs: config.agent.kubernetes_api.allowed_agent_cache_error_ttl,
      gitlabToKasSecret: apiSecretFile ? readSecretFile('api.listen.authentication_secret_file', apiSecretFile) : secret,
      sharedRefusals: refusals,
    });
    services.provide(GITLAB, { client, usage, events });
    services.provide(AUTH, { agents: auth, proxy: auth, corsOrigin: new URL(g.external_url ?? g.address).origin });
    return {
      start: () => Promise.resolve(),
      stop: () => {
        client.close();
        return Promise.resolve();
      },
    };
  },
});

/** Usage reporting to GitLab (usage metrics and agent events), started last (after every listener) and stopped first. */
export const usageMetricsModule = defineModule({
  name: 'usage_metrics',
  owns: [usageMetricsConfig],
  create(ctx) {
    const gitlab = ctx.services.find(GITLAB);
    if (!gitlab) return null;
    return {
      start: () => {
        gitlab.usage.start(ctx.config.observability.usage_report_period);
        gitlab.events.start(ctx.config.observability.usage_report_period);
        return Promise.resolve();
      },
      stop: async () => {
        await Promise.all([gitlab.usage.stop(), gitlab.events.stop()]);
      },
    };
  },
});
