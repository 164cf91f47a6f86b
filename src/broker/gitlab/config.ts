/**
 * GitLab mode's keys: the `gitlab` section (without it kas runs standalone), how long GitLab's
 * answers about agents and proxy users are cached, and how often usage is reported.
 */
import { z } from 'zod';
import { configPart } from '../configuration/config-part.js';
import { duration, file } from '../configuration/fields.js';

const gitlab = z
  .strictObject({
    address: z.url({ error: 'expected the URL of GitLab, e.g. https://gitlab.example.com' }),
    external_url: z.url({ error: 'expected the URL users reach GitLab at' }).optional(),
    authentication_secret_file: file,
    ca_certificate_file: file.optional(),
    repository_token_file: file.optional(),
    api_rate_limit: z
      .strictObject({
        refill_rate_per_second: z.number().positive().default(50),
        bucket_size: z.number().int().min(1).default(250),
      })
      .prefault({}),
    request_timeout: duration('20s'),
  })
  .superRefine((g, ctx) => {
    for (const key of ['address', 'external_url'] as const) {
      const v = g[key];
      if (v !== undefined && !/^https?:\/\//.test(v)) ctx.addIssue({ code: 'custom', path: [key], message: 'expected an http:// or https:// URL' });
    }
  });

export const gitlabConfig = configPart('', { gitlab: gitlab.optional() }, `# GitLab mode: add a gitlab section (without it kas runs in standalone mode):
# gitlab:
#   address: https://gitlab.example.com
#   external_url: https://gitlab.example.com      # CORS origin; defaults to address
#   authentication_secret_file: /etc/kas/gitlab_secret
#   ca_certificate_file: /etc/kas/gitlab-ca.pem
#   repository_token_file: /etc/kas/repo_token
#   api_rate_limit:
#     refill_rate_per_second: 50
#     bucket_size: 250
#   request_timeout: 20s
#`);

/** Caches of GitLab's answers about agent tokens. */
export const agentInfoCacheConfig = configPart('agent', {
  info_cache_ttl: duration('5m'),
  info_cache_error_ttl: duration('1m'),
}, `info_cache_ttl: 5m
info_cache_error_ttl: 1m`);

/** Caches of GitLab's answers about proxy users. */
export const proxyAuthCacheConfig = configPart('agent.kubernetes_api', {
  allowed_agent_cache_ttl: duration('60s'),
  allowed_agent_cache_error_ttl: duration('10s'),
}, `allowed_agent_cache_ttl: 60s
allowed_agent_cache_error_ttl: 10s`);

export const usageMetricsConfig = configPart('observability', {
  usage_report_period: duration('60s'),
  usage_report_max_events: z.number().int().min(1).max(1_000_000).default(10_000),
}, `usage_report_period: 60s
usage_report_max_events: 10000      # agent events (registrations, proxy users) waiting for GitLab at most`);
