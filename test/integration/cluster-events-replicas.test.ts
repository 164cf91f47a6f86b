/**
 * Cluster events across kas replicas sharing a real Redis: a watcher on replica 2 receives the
 * events of an agent connected to replica 1 only, and a replica that started after the events were
 * sent answers the list from what Redis kept.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KasApp } from '../../src/broker/app.js';
import { createLogger } from '../../src/shared/logger.js';
import { createKubeEvent, listEvents, watchEvents, type EventsApi } from '../support/events-api.js';
import { gitlabToKasJwt } from '../support/fake-gitlab.js';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { LogCapture } from '../support/logs.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { startStack, type Stack } from '../support/stack.js';
import { waitFor } from '../support/wait.js';

describe('cluster events with several kas replicas and Redis', () => {
  let redis: TestRedis;
  let upstream: FakeKubeApi;
  let stack: Stack;
  let dir: string;
  const secret = randomBytes(32);
  const replicas: KasApp[] = [];
  const apiOf = (app: KasApp): EventsApi => ({ address: app.addresses.api!, jwt: () => gitlabToKasJwt(secret) });

  async function replica(): Promise<KasApp> {
    const app = new KasApp({ config: stack.kas.config, logger: createLogger({ name: 'kas', level: 'debug', destination: new LogCapture() }) });
    await app.start();
    replicas.push(app);
    return app;
  }

  beforeAll(async () => {
    redis = await startRedis();
    upstream = await startFakeKubeApi();
    dir = mkdtempSync(join(tmpdir(), 'kas-events-replicas-'));
    const secretFile = join(dir, 'secret');
    writeFileSync(secretFile, `${secret.toString('base64')}\n`);
    stack = await startStack({
      upstream,
      kas: {
        redis: { server: { address: redis.address }, key_prefix: `events-${process.pid}` },
        private_api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
        api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
      },
    });
    await waitFor(() => stack.agentLogs.text.includes('informer synced'), 'agentk\'s events informer to sync');
  }, 60_000);

  afterAll(async () => {
    for (const r of replicas) await r.stop().catch(() => undefined);
    await stack?.close();
    await upstream?.close();
    await redis?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a watcher on replica 2 receives the events of an agent connected to replica 1; ids are shared', async () => {
    const second = await replica();
    expect(second.registry.connectionCount).toBe(0);
    const remote = await watchEvents(apiOf(second), 1);
    const local = await watchEvents(apiOf(stack.kas), 1);
    await createKubeEvent(upstream, { type: 'Warning', reason: 'FailedScheduling', message: '0/3 nodes are available', object: 'api-0' });
    await waitFor(() => remote.events().some((e) => e.reason === 'FailedScheduling'), 'the event on replica 2\'s watch', 20_000, { describe: () => remote.text() });
    await waitFor(() => local.events().some((e) => e.reason === 'FailedScheduling'), 'the event on replica 1\'s watch', 20_000);
    const [a] = remote.events().filter((e) => e.reason === 'FailedScheduling');
    const [b] = local.events().filter((e) => e.reason === 'FailedScheduling');
    expect(a).toEqual(b);
    expect((await listEvents(apiOf(second), 1)).find((e) => e.reason === 'FailedScheduling')).toEqual(a);
    remote.close();
    local.close();
  });

  test('a replica that started after the events were sent lists them from Redis', async () => {
    await createKubeEvent(upstream, { type: 'Warning', reason: 'Unhealthy', message: 'Readiness probe failed', object: 'api-1' });
    await waitFor(async () => (await listEvents(apiOf(stack.kas), 1)).some((e) => e.reason === 'Unhealthy'), 'the event on replica 1');
    const late = await replica();
    const events = await listEvents(apiOf(late), 1);
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['Unhealthy', 'FailedScheduling', 'AgentConnected']));
    expect(events).toEqual(await listEvents(apiOf(stack.kas), 1));
  });
});
