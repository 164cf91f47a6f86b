/** Several replicas: the `redis` section, the private API replicas route through, entry lifetimes. */
import { z } from 'zod';
import { configPart } from '../configuration/config-part.js';
import { address, duration, file } from '../configuration/fields.js';

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

export const redisConfig = configPart('', { redis: redis.optional() }, `# Several replicas: add a redis section (without it kas runs as a single replica, state in memory)
# and a private_api authentication secret:
# redis:
#   server:
#     address: redis:6379
#   # or sentinel: {master_name: mymaster, addresses: [sentinel-0:26379], sentinel_password_file: ...}
#   password_file: /etc/kas/redis_password
#   username: default
#   database_index: 0
#   tls: {enabled: false, ca_certificate_file: ...}
#   key_prefix: gitlab-kas
#   dial_timeout: 5s
#   read_timeout: 1s
#   write_timeout: 1s
#   ready_requires_redis: false
#`);

export const privateApiConfig = configPart('private_api', {
  listen: z.strictObject({ address: address('127.0.0.1:8155'), authentication_secret_file: file.optional() }).prefault({}),
}, `listen:
  address: 127.0.0.1:8155
  # authentication_secret_file: /etc/kas/private_secret   # the private API is served when set`);

/** How long a replica's entries in Redis live, and how often it rewrites them. */
export const replicaEntriesConfig = configPart('agent', {
  redis_conn_info_ttl: duration('5m'),
  redis_conn_info_refresh: duration('4m'),
}, `redis_conn_info_ttl: 5m
redis_conn_info_refresh: 4m`);
