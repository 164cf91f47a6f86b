/**
 * kas configuration: the schema of the YAML file, its defaults, and validation whose errors name the
 * bad key and what was expected. Keys follow the real kas configuration file where the feature is
 * the same (docs/configuration.md lists every key; a test keeps kas.example.yaml equal to the defaults).
 */
import { z } from 'zod';
import { parseListenAddress } from '../../shared/address.js';
import { parseDuration } from '../../shared/duration.js';
import { LOG_LEVELS } from '../../shared/logger.js';

const duration = (def: string) =>
  z
    .string({ error: 'expected a duration string such as "20s", "5m" or "2h"' })
    .default(def)
    .transform((s, ctx) => {
      const ms = parseDuration(s);
      if (ms === null) {
        ctx.addIssue({ code: 'custom', message: `expected a duration such as "20s", "5m" or "2h", got ${JSON.stringify(s)}` });
        return z.NEVER;
      }
      return ms;
    });

const address = (def: string) =>
  z
    .string({ error: 'expected a listen address "host:port"' })
    .default(def)
    .refine((s) => parseListenAddress(s) !== null, { message: 'expected a listen address "host:port" (port 0 picks a free port)' });

const size = (def: number, min: number, max: number) =>
  z.number({ error: 'expected a number of bytes' }).int().min(min).max(max).default(def);

const file = z.string({ error: 'expected a file path' }).min(1, 'expected a file path');

const tlsFiles = {
  certificate_file: file.optional(),
  key_file: file.optional(),
};

function tlsPair<T extends { certificate_file?: string | undefined; key_file?: string | undefined }>(v: T, ctx: z.RefinementCtx): void {
  if ((v.certificate_file === undefined) !== (v.key_file === undefined)) {
    ctx.addIssue({ code: 'custom', path: [v.certificate_file === undefined ? 'certificate_file' : 'key_file'], message: 'certificate_file and key_file go together' });
  }
}

const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'expected a DNS label (lower-case letters, digits and "-")').max(63);

const impersonate = z.strictObject({
  username: z.string().min(1),
  uid: z.string().optional(),
  groups: z.array(z.string()).optional(),
  extra: z.record(z.string(), z.array(z.string())).optional(),
});

export const accessAsSchema = z.union(
  [z.strictObject({ agent: z.strictObject({}) }), z.strictObject({ impersonate })],
  { error: 'expected {agent: {}} or {impersonate: {username, groups, ...}}' },
);

const tunnel = z
  .strictObject({
    max_frame_size: size(1024 * 1024, 4096, 64 * 1024 * 1024),
    max_streams: z.number().int().min(1).max(1_000_000).default(1024),
    max_header_size: size(64 * 1024, 1024, 1024 * 1024),
    initial_window: size(256 * 1024, 16 * 1024, 0x7fffffff),
    max_window: size(16 * 1024 * 1024, 16 * 1024, 0x7fffffff),
    chunk_size: size(64 * 1024, 1024, 1024 * 1024),
    max_session_buffer: size(64 * 1024 * 1024, 64 * 1024, 16 * 1024 * 1024 * 1024),
    max_process_buffer: size(512 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024 * 1024),
    ping_interval: duration('20s'),
    handshake_timeout: duration('10s'),
    drain_grace: duration('30s'),
  })
  .prefault({})
  .superRefine((t, ctx) => {
    if (t.max_header_size > t.max_frame_size - 64) ctx.addIssue({ code: 'custom', path: ['max_header_size'], message: 'must be smaller than max_frame_size' });
    if (t.chunk_size > t.max_frame_size - 64) ctx.addIssue({ code: 'custom', path: ['chunk_size'], message: 'must be smaller than max_frame_size' });
    if (t.max_window < t.initial_window) ctx.addIssue({ code: 'custom', path: ['max_window'], message: 'must be at least initial_window' });
  });

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

const redis = z
  .strictObject({
    server: z.strictObject({ address: z.string().min(1, 'expected "host:port"') }).optional(),
    sentinel: z
      .strictObject({
        master_name: z.string().min(1),
        addresses: z.array(z.string().min(1)).min(1),
        sentinel_password_file: file.optional(),
      })
      .optional(),
    password_file: file.optional(),
    username: z.string().optional(),
    database_index: z.number().int().min(0).max(15).default(0),
    tls: z.strictObject({ enabled: z.boolean().default(false), ca_certificate_file: file.optional() }).prefault({}),
    key_prefix: z.string().min(1).default('gitlab-kas'),
    dial_timeout: duration('5s'),
    read_timeout: duration('1s'),
    write_timeout: duration('1s'),
    /** Readiness reports not ready while Redis is unreachable (default: keep serving local agents). */
    ready_requires_redis: z.boolean().default(false),
  })
  .superRefine((r, ctx) => {
    if (!r.server === !r.sentinel) ctx.addIssue({ code: 'custom', path: ['server'], message: 'give exactly one of redis.server and redis.sentinel' });
  });

export const configSchema = z.strictObject({
  gitlab: gitlab.optional(),
  redis: redis.optional(),
  private_api: z
    .strictObject({
      listen: z.strictObject({ address: address('127.0.0.1:8155'), authentication_secret_file: file.optional() }).prefault({}),
    })
    .prefault({}),
  agent: z
    .strictObject({
      info_cache_ttl: duration('5m'),
      info_cache_error_ttl: duration('1m'),
      redis_conn_info_ttl: duration('5m'),
      redis_conn_info_refresh: duration('4m'),
      configuration: z.strictObject({ poll_period: duration('5m') }).prefault({}),
      listen: z
        .strictObject({
          address: address('127.0.0.1:8150'),
          ...tlsFiles,
          max_connection_age: duration('2h'),
          connections_per_token_per_minute: z.number().int().min(1).default(40000),
          headers_timeout: duration('10s'),
        })
        .prefault({})
        .superRefine(tlsPair),
      tunnel,
      kubernetes_api: z
        .strictObject({
          listen: z
            .strictObject({ address: address('0.0.0.0:8154'), ...tlsFiles, headers_timeout: duration('30s') })
            .prefault({})
            .superRefine(tlsPair),
          url_path_prefix: z
            .string()
            .default('/')
            .refine((p) => p.startsWith('/'), { message: 'expected a path starting with "/"' }),
          agent_wait_timeout: duration('20s'),
          allowed_agent_cache_ttl: duration('60s'),
          allowed_agent_cache_error_ttl: duration('10s'),
        })
        .prefault({}),
    })
    .prefault({}),
  api: z
    .strictObject({
      listen: z.strictObject({ address: address('127.0.0.1:8153'), authentication_secret_file: file.optional() }).prefault({}),
    })
    .prefault({}),
  observability: z
    .strictObject({
      listen: z.strictObject({ address: address('127.0.0.1:8151') }).prefault({}),
      logging: z.strictObject({ level: z.enum(LOG_LEVELS).default('info') }).prefault({}),
      usage_report_period: duration('60s'),
    })
    .prefault({}),
  standalone: z
    .strictObject({
      agents: z
        .array(z.strictObject({ id: z.number().int().min(1), name: dnsLabel, token_file: file }))
        .default([])
        .superRefine((agents, ctx) => {
          const ids = new Set<number>();
          agents.forEach((a, i) => {
            if (ids.has(a.id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `agent id ${a.id} appears twice` });
            ids.add(a.id);
          });
        }),
      proxy_tokens: z
        .array(z.strictObject({ token_file: file, agents: z.array(z.number().int().min(1)).min(1), access_as: accessAsSchema.default({ agent: {} }) }))
        .default([]),
      config_dir: file.optional(),
    })
    .prefault({})
    .superRefine((s, ctx) => {
      const ids = new Set(s.agents.map((a) => a.id));
      s.proxy_tokens.forEach((t, i) =>
        t.agents.forEach((id, j) => {
          if (!ids.has(id)) ctx.addIssue({ code: 'custom', path: ['proxy_tokens', i, 'agents', j], message: `agent id ${id} is not in standalone.agents` });
        }),
      );
    }),
});

export type KasConfig = z.output<typeof configSchema>;
export type AccessAs = z.output<typeof accessAsSchema>;
export type TunnelConfig = KasConfig['agent']['tunnel'];

/** A configuration error: its message names the key and is safe to show. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Validates parsed YAML; throws ConfigError listing every bad key as "path.to.key: what was expected". */
export function validateConfig(raw: unknown): KasConfig {
  const result = configSchema.safeParse(raw ?? {});
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const path = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => `${path ? `${path}.` : ''}${k}: unknown key`).join('\n');
    }
    return `${path || '(top level)'}: ${issue.message}`;
  });
  throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
}
