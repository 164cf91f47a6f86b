/**
 * The Redis connection rate limit against a real Redis: counting and refusing over the limit, and
 * the documented degraded mode (a Redis failure allows the connection and counts the error), also
 * when the failure happens inside the MULTI transaction, which resolves instead of rejecting.
 */
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { createLogger } from '../../shared/logger.js';
import { startRedis, type TestRedis } from '../../../test/support/redis.js';
import { ReplicaMetrics } from './metrics.js';
import { RedisHealth } from './redis-health.js';
import { RedisKeys } from './redis-keys.js';
import { RedisConnectionRateLimit } from './redis-rate-limit.js';

let server: TestRedis;
let redis: Redis;
beforeAll(async () => {
  server = await startRedis();
  redis = new Redis({ port: server.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
});
afterAll(async () => {
  redis.disconnect();
  await server.close();
});

function limiter(prefix: string) {
  const metrics = new ReplicaMetrics(new Registry());
  const health = new RedisHealth(createLogger({ name: 'test', level: 'silent' }), metrics);
  const keys = new RedisKeys(prefix);
  const errors = async () => (await metrics.redisErrors.get()).values.find((v) => v.labels.op === 'rate_limit')?.value ?? 0;
  return { limit: new RedisConnectionRateLimit(redis, keys, health), keys, health, errors };
}

test('counts connections per token and minute and refuses those over the limit', async () => {
  const { limit, health, errors } = limiter('counting');
  expect(await limit.allow('digest-a', 2)).toBe(true);
  expect(await limit.allow('digest-a', 2)).toBe(true);
  // A third in the same minute is over; unless the minute turned just now, which starts a new window.
  const third = await limit.allow('digest-a', 2);
  const turned = (await redis.keys('counting:conn_rate:digest-a:*')).length > 1;
  expect(third).toBe(turned);
  expect(health.healthy).toBe(true);
  expect(await errors()).toBe(0);
});

test('a Redis error inside the transaction (INCR on a key of the wrong type) allows the connection and counts the error', async () => {
  const { limit, keys, health, errors } = limiter('wrongtype');
  // The key the limiter uses, made the same way, for this minute and the next (the test may cross one).
  const minute = Math.floor(Date.now() / 60_000);
  for (const m of [minute, minute + 1]) await redis.hset(keys.key('conn_rate', 'digest-b', m), 'not', 'a counter');
  expect(await limit.allow('digest-healthy', 5)).toBe(true);
  expect(health.healthy).toBe(true);
  expect(await limit.allow('digest-b', 5)).toBe(true);
  expect(await errors()).toBe(1);
  expect(health.healthy).toBe(false);
});
