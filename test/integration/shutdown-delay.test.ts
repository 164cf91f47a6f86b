/**
 * `shutdown_delay`: an ingress learns that a pod stops only when it sees its readiness fail, and
 * sends new connections to it until then. On SIGTERM kas turns not ready at once but keeps
 * accepting and serving for the delay, then drains. Here: requests and agent connections made to a
 * replica during its delay succeed; and rolling restarts of three replicas behind an ingress that
 * follows readiness by polling (test/support/balancer.ts `startIngress`) fail no request.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { KasApp } from '../../src/broker/app.js';
import { createLogger } from '../../src/shared/logger.js';
import { startIngress, type IngressBackend, type TestIngress } from '../support/balancer.js';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { LogCapture } from '../support/logs.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { proxyRequest, startStack, type Stack } from '../support/stack.js';
import { readAll } from '../support/streams.js';
import { waitFor } from '../support/wait.js';

function readiness(app: KasApp): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(`http://${app.addresses.observability}/readiness`, { agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      })
      .on('error', reject);
  });
}

/** Whether a TCP connection to `address` is accepted. */
function accepts(address: string): Promise<boolean> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), host, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/** The status of a WebSocket upgrade to kas's agent listener with `token` (101: accepted). */
function agentUpgrade(app: KasApp, ca: string, token: string): Promise<number> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(app.addresses.agent!.split(':')[1]), ca, servername: 'localhost' }, () => {
      socket.write(`GET / HTTP/1.1\r\nHost: kas\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    });
    socket.once('data', (d: Buffer) => {
      resolve(Number(/^HTTP\/1.1 (\d+)/.exec(d.toString())?.[1] ?? 0));
      socket.destroy();
    });
    socket.on('error', () => resolve(0));
  });
}

describe('a replica during its shutdown delay', () => {
  test('is not ready at once, yet serves new proxy requests and accepts new agent connections; it drains after the delay', async () => {
    const upstream = await startFakeKubeApi({ handler: (req, res) => res.end(`served ${req.url}`) });
    // Long enough that the checks below finish inside it even on a loaded machine.
    const stack = await startStack({ upstream, kas: { shutdown_delay: '8s' } });
    try {
      expect((await readiness(stack.kas)).status).toBe(200);
      let drained = false;
      const shutdown = stack.kas.shutdown(2000).then(() => (drained = true));
      const during = await readiness(stack.kas);
      expect(during.status).toBe(503);
      expect(during.body).toContain('shutting down');
      // New connections and requests through the agent already connected.
      for (let i = 0; i < 5; i++) {
        const res = await proxyRequest(stack, 'GET', `/api/v1/namespaces?during-delay=${i}`);
        expect(res.statusCode).toBe(200);
        expect((await readAll(res)).toString()).toBe(`served /api/v1/namespaces?during-delay=${i}`);
      }
      // A new agent connection is accepted, and a whole new agentk connects and serves.
      expect(await agentUpgrade(stack.kas, stack.proxyCa, stack.agentToken)).toBe(101);
      await stack.agent!.stop();
      await waitFor(() => stack.kas.registry.connectionCount === 0, 'the first agentk to leave');
      await stack.startAgent();
      await stack.waitForAgent();
      const res = await proxyRequest(stack, 'GET', '/through-the-new-agentk');
      expect((await readAll(res)).toString()).toBe('served /through-the-new-agentk');
      expect(drained).toBe(false);
      expect(stack.kasLogs.entries.some((e) => e.msg === 'not ready; still serving until the shutdown delay ends')).toBe(true);
      expect(stack.kasLogs.entries.some((e) => e.msg === 'shutting down')).toBe(false);
      // After the delay: the drain as before, then nothing listens.
      await shutdown;
      expect(stack.kasLogs.entries.some((e) => e.msg === 'shutting down')).toBe(true);
      expect(await accepts(stack.kas.addresses.kubernetes_api!)).toBe(false);
      expect(await accepts(stack.kas.addresses.agent!)).toBe(false);
    } finally {
      await stack.close();
      await upstream.close();
    }
  }, 60_000);
});

/** The ingress polls readiness every POLL_MS; the delay is well above it (with room for a slow poll). */
const POLL_MS = 100;
const SHUTDOWN_DELAY = '1500ms';
const ROUNDS = 5;

/** `p`, or a rejection naming `what` when it takes longer than 20 s (so a hang fails with a reason). */
function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), 20_000)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

describe('rolling restarts behind an ingress that follows readiness', () => {
  let redis: TestRedis;
  let upstream: FakeKubeApi;
  let stack: Stack;
  const replicas: KasApp[] = [];
  const stopped: KasApp[] = [];

  function backend(listener: 'agent' | 'kubernetes_api') {
    return (): IngressBackend[] => replicas.map((r) => ({ address: r.addresses[listener]!, readinessUrl: `http://${r.addresses.observability}/readiness` }));
  }

  function newReplica(): KasApp {
    return new KasApp({ config: stack.kas.config, logger: createLogger({ name: 'kas', level: 'debug', destination: new LogCapture() }) });
  }

  beforeAll(async () => {
    redis = await startRedis();
    upstream = await startFakeKubeApi({ handler: (req, res) => res.end(`served ${req.url}`), record: false });
    const secretFile = join(process.env.TMPDIR ?? '/tmp', `kas-rolling-${process.pid}.secret`);
    writeFileSync(secretFile, `${randomBytes(32).toString('base64')}\n`);
    stack = await startStack({
      upstream,
      startAgent: false,
      kas: {
        shutdown_delay: SHUTDOWN_DELAY,
        redis: { server: { address: redis.address }, key_prefix: `rolling-${process.pid}` },
        private_api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
        agent: { redis_conn_info_refresh: '1s', redis_conn_info_ttl: '5s', kubernetes_api: { agent_wait_timeout: '5s' } },
      },
    });
    replicas.push(stack.kas);
    for (let i = 0; i < 2; i++) {
      const r = newReplica();
      await r.start();
      replicas.push(r);
    }
  });

  afterAll(async () => {
    await stack?.agent?.stop().catch(() => undefined);
    for (const r of [...replicas, ...stopped]) if (r !== stack?.kas) await r.stop().catch(() => undefined);
    await stack?.close();
    await upstream?.close();
    await redis?.close();
  });

  test(`a rolling restart of three replicas, ${ROUNDS} times in a row under steady load, fails no request`, async () => {
    const agentIngress = await startIngress(backend('agent'), { pollMs: POLL_MS });
    const proxyIngress = await startIngress(backend('kubernetes_api'), { pollMs: POLL_MS });
    const inRotation = (ingress: TestIngress, app: KasApp, listener: 'agent' | 'kubernetes_api') => ingress.inRotation().includes(app.addresses[listener]!);
    try {
      await waitFor(() => replicas.every((r) => inRotation(agentIngress, r, 'agent') && inRotation(proxyIngress, r, 'kubernetes_api')), 'the ingresses to put every replica in rotation');
      await stack.startAgent({ kasAddress: `wss://localhost:${agentIngress.address.split(':')[1]}/` });
      await waitFor(() => replicas.reduce((n, r) => n + r.registry.connectionCount, 0) >= 2, 'the agent to connect through the ingress');
      const viaIngress: Stack = { ...stack, proxyUrl: `https://${proxyIngress.address}` };
      const failures: string[] = [];
      let served = 0;
      let stop = false;
      // Two clients, each one request per connection, so every request is a new connection the
      // ingress places.
      const client = async (n: number) => {
        for (let i = 0; !stop; i++) {
          try {
            const res = await proxyRequest(viaIngress, 'GET', `/load/${n}/${i}`);
            const body = (await readAll(res)).toString();
            if (res.statusCode === 200 && body === `served /load/${n}/${i}`) served++;
            else failures.push(`${res.statusCode}: ${body.slice(0, 200)}`);
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      };
      const load = Promise.all([client(1), client(2)]);
      try {
        for (let round = 0; round < ROUNDS; round++) {
          // As a Deployment rolls (maxSurge 1, maxUnavailable 0): a new pod starts and becomes
          // ready, then an old one gets SIGTERM and its endpoint goes.
          for (let i = 0; i < 3; i++) {
            const step = `round ${round + 1}, replica ${i + 1}`;
            const fresh = newReplica();
            await within(fresh.start(), `${step}: a new replica to start`);
            const old = replicas[i]!;
            replicas[i] = fresh;
            await waitFor(() => inRotation(proxyIngress, fresh, 'kubernetes_api') && inRotation(agentIngress, fresh, 'agent'), `${step}: the ingresses to put the new replica in rotation`);
            stopped.push(old);
            await within(old.shutdown(3000), `${step}: the old replica to shut down`);
          }
        }
      } finally {
        stop = true;
        await load;
      }
      expect(served).toBeGreaterThan(0);
      expect(failures).toEqual([]);
    } finally {
      await stack.agent?.stop();
      await agentIngress.close();
      await proxyIngress.close();
    }
  }, 120_000);
});
