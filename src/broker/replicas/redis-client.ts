/**
 * The Redis connection of kas (ioredis), made from the `redis` configuration section: a server or
 * Sentinel, password and username, database, TLS, timeouts. Commands fail fast while Redis is
 * unreachable (no offline queue), so kas degrades to serving its own agents instead of hanging;
 * ioredis reconnects by itself in the background.
 */
import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import { readTokenFile } from '../../shared/tokens.js';
import { ConfigError } from '../configuration/config-error.js';
import type { ConfigOf } from '../configuration/config-part.js';
import type { redisConfig } from './config.js';

export type RedisConfig = NonNullable<ConfigOf<[typeof redisConfig]>['redis']>;

function hostPort(text: string, key: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (!m) throw new ConfigError(`${key}: expected "host:port", got ${JSON.stringify(text)}`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

function secretOf(key: string, path: string | undefined): string | undefined {
  if (!path) return undefined;
  try {
    return readTokenFile(path);
  } catch (err) {
    throw new ConfigError(`${key}: ${(err as Error).message}`, { cause: err });
  }
}

function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`redis.tls.ca_certificate_file: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

export function redisOptions(cfg: RedisConfig): RedisOptions {
  const common: RedisOptions = {
    username: cfg.username,
    password: secretOf('redis.password_file', cfg.password_file),
    db: cfg.database_index,
    connectTimeout: cfg.dial_timeout,
    commandTimeout: cfg.read_timeout + cfg.write_timeout,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    lazyConnect: true,
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
    ...(cfg.tls.enabled && { tls: cfg.tls.ca_certificate_file ? { ca: readCa(cfg.tls.ca_certificate_file) } : {} }),
  };
  if (cfg.sentinel) {
    return {
      ...common,
      name: cfg.sentinel.master_name,
      sentinels: cfg.sentinel.addresses.map((a, i) => hostPort(a, `redis.sentinel.addresses.${i}`)),
      sentinelPassword: secretOf('redis.sentinel.sentinel_password_file', cfg.sentinel.sentinel_password_file),
    };
  }
  return { ...common, ...hostPort(cfg.server!.address, 'redis.server.address') };
}

export function createRedis(cfg: RedisConfig): Redis {
  return new Redis(redisOptions(cfg));
}
