/**
 * Several kas replicas sharing a real Redis: a request landing on any replica reaches an agent
 * connected to another (plain, watch, upgrade), waits for an agent that connects elsewhere, the
 * API for GitLab answers for all replicas, Redis outages degrade to local service and recover, and a
 * rolling restart behind a load balancer fails no request.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import tls from 'node:tls';
import { Redis } from 'ioredis';
import { KasApp } from '../../src/broker/app.js';
import { createLogger } from '../../src/shared/logger.js';
import { gitlabToKasJwt } from '../support/fake-gitlab.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { startBalancer } from '../support/balancer.js';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { readAll } from '../support/streams.js';
import { LogCapture } from '../support/logs.js';
import { proxyRequest, startStack, type Stack } from '../support/stack.js';
import { waitFor } from '../support/wait.js';

const secret = randomBytes(32);


describe('several kas replicas with Redis', () => {
  let redis: TestRedis;
  let upstream: FakeKubeApi;
  let stack: Stack;
  const replicas: KasApp[] = [];
  let upgradeEcho = false;

  async function replica(): Promise<KasApp> {
    const app = new KasApp({ config: stack.kas.config, logger: createLogger({ name: 'kas', level: 'debug', destination: new LogCapture() }) });
    await app.start();
    replicas.push(app);
    return app;
  }

  function via(app: KasApp): Stack {
    return { ...stack, proxyUrl: `https://${app.addresses.kubernetes_api}` };
  }

  beforeAll(async () => {
    redis = await startRedis();
    upstream = await startFakeKubeApi({
      handler: (req, res) => {
        if (req.url!.startsWith('/watch-forever')) {
          res.writeHead(200);
          res.write('{"type":"ADDED"}\n');
          return;
        }
        if (req.url!.startsWith('/watch')) {
          res.writeHead(200);
          res.write('event-1\n');
          setTimeout(() => res.end('event-2\n'), 50);
          return;
        }
        if (req.url!.startsWith('/framing')) {
          // Tells how the request body arrived: its framing header and its length.
          let n = 0;
          req.on('data', (c: Buffer) => (n += c.length));
          req.on('end', () => res.end(`transfer-encoding=${req.headers['transfer-encoding'] ?? 'none'} length=${n}`));
          return;
        }
        res.end(`served ${req.url}`);
      },
      onUpgrade: (_req, socket) => {
        if (!upgradeEcho) return socket.destroy();
        socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n');
        socket.on('data', (d: Buffer) => socket.write(d));
        socket.on('end', () => socket.end());
      },
    });
    const secretFile = join(process.env.TMPDIR ?? '/tmp', `kas-private-${process.pid}.secret`);
    writeFileSync(secretFile, `${secret.toString('base64')}\n`);
    stack = await startStack({
      upstream,
      kas: {
        redis: { server: { address: redis.address }, key_prefix: `test-${process.pid}` },
        private_api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
        api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
        agent: { redis_conn_info_refresh: '1s', redis_conn_info_ttl: '5s', kubernetes_api: { agent_wait_timeout: '5s' } },
      },
    });
    replicas.push(stack.kas);
    await replica();
    await replica();
  });

  afterAll(async () => {
    for (const r of replicas) if (r !== stack?.kas) await r.stop().catch(() => undefined);
    await stack?.close();
    await upstream?.close();
    await redis?.close();
  });

  test('a request through replica B reaches the agent connected only to replica A (plain and streaming)', async () => {
    const [, b, c] = replicas;
    expect(b!.registry.connectionCount).toBe(0);
    const res = await proxyRequest(via(b!), 'GET', '/api/v1/namespaces');
    expect((await readAll(res)).toString()).toBe('served /api/v1/namespaces');
    const watch = await proxyRequest(via(c!), 'GET', '/watch?watch=1');
    expect((await readAll(watch)).toString()).toBe('event-1\nevent-2\n');
    const metrics = await (await fetch(`http://${b!.addresses.observability}/metrics`)).text();
    expect(metrics).toMatch(/kas_routed_requests_total\{via="peer"\} [1-9]/);
  });

  test('through replica B a request keeps its framing: a GET without a body gets none, one with a chunked body keeps it', async () => {
    const b = replicas[1]!;
    const plain = await proxyRequest(via(b), 'GET', '/framing');
    expect((await readAll(plain)).toString()).toBe('transfer-encoding=none length=0');
    const body = randomBytes(3000);
    const chunked = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = https.request(new URL('/framing', via(b).proxyUrl), { method: 'GET', headers: { authorization: stack.bearer(1), 'transfer-encoding': 'chunked' }, ca: stack.proxyCa, agent: false }, resolve);
      req.on('error', reject);
      req.write(body.subarray(0, 1000));
      setTimeout(() => req.end(body.subarray(1000)), 20);
    });
    expect((await readAll(chunked)).toString()).toBe('transfer-encoding=chunked length=3000');
  });

  test('an upgrade through replica B carries raw bytes both ways', async () => {
    upgradeEcho = true;
    const [, b] = replicas;
    const [host, port] = b!.addresses.kubernetes_api!.split(':');
    const sock = tls.connect({ host, port: Number(port), ca: stack.proxyCa, servername: 'localhost' });
    await new Promise((r) => sock.once('secureConnect', r));
    sock.write(`POST /api/v1/namespaces/default/pods/x/exec HTTP/1.1\r\nHost: kas\r\nAuthorization: ${stack.bearer()}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n`);
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    await waitFor(() => Buffer.concat(got).toString().includes('\r\n\r\n'), 'the 101');
    sock.write('across-replicas');
    await waitFor(() => Buffer.concat(got).toString().includes('across-replicas'), 'the echo through two replicas');
    expect(Buffer.concat(got).toString()).toMatch(/^HTTP\/1.1 101 /);
    sock.destroy();
  });

  test('a request waiting on replica C is served as soon as the agent connects to replica A', async () => {
    await stack.agent!.stop();
    const probe = new Redis(redis.port, '127.0.0.1');
    try {
      await waitFor(async () => (await probe.hlen(`test-${process.pid}:agent_tunnels:1`)) === 0, 'the agent entry to be removed from Redis');
    } finally {
      probe.disconnect();
    }
    const [, , c] = replicas;
    const pending = proxyRequest(via(c!), 'GET', '/late');
    await new Promise((r) => setTimeout(r, 300));
    await stack.startAgent();
    expect((await readAll(await pending)).toString()).toBe('served /late');
  });

  test('connected_agents on any replica lists the connections held by all replicas', async () => {
    await stack.waitForAgent(2);
    const [, , c] = replicas;
    await waitFor(async () => {
      const res = await fetch(`http://${c!.addresses.api}/api/v1/connected_agents?agent_id=1`, { headers: { authorization: `Bearer ${gitlabToKasJwt(secret)}` } });
      const body = (await res.json()) as { agents: Array<{ connections: unknown[] }> };
      return body.agents[0]?.connections.length === 2;
    }, 'replica C to report the two connections held by replica A');
  });

  test('without Redis each replica still serves its own agents, and routing recovers when Redis is back', async () => {
    const [a, b] = replicas;
    await redis.kill();
    const local = await proxyRequest(via(a!), 'GET', '/while-redis-is-down');
    expect((await readAll(local)).toString()).toBe('served /while-redis-is-down');
    // The next refresh of A's entries fails: counted, and A keeps serving.
    await waitFor(async () => /kas_redis_errors_total\{op="[a-z_]+"\} [1-9]/.test(await (await fetch(`http://${a!.addresses.observability}/metrics`)).text()), 'a counted Redis failure');
    const again = await proxyRequest(via(a!), 'GET', '/while-redis-is-down');
    expect(again.statusCode).toBe(200);
    await readAll(again);
    await redis.restart();
    await waitFor(async () => {
      const res = await proxyRequest(via(b!), 'GET', '/after-redis-returned');
      return res.statusCode === 200 && (await readAll(res)).toString() === 'served /after-redis-returned';
    }, 'routing through replica B to work again after Redis came back', 30_000);
  }, 60_000);

  test('a rolling restart behind a load balancer fails no request', async () => {
    // The agent dials a load balancer over every replica's agent listener, as through an ingress.
    await stack.agent!.stop();
    const lb = await startBalancer(() => replicas.filter((r) => r.addresses.agent).map((r) => r.addresses.agent!));
    await stack.startAgent({ kasAddress: `wss://localhost:${lb.address.split(':')[1]}/` });
    try {
      await waitFor(() => replicas.reduce((n, r) => n + r.registry.connectionCount, 0) >= 2, 'the agent to connect through the balancer');
      const target = replicas[2]!;
      // Long watches open through every replica: each must end (cut or finished) when the replica
      // holding its tunnel restarts, never hang.
      const watches = await Promise.all(replicas.map((r) => proxyRequest(via(r), 'GET', '/watch-forever?watch=1')));
      const watchesEnded = watches.map(
        (w) =>
          new Promise<void>((resolve) => {
            w.on('close', () => resolve());
            w.resume();
          }),
      );
      let failures = 0;
      let served = 0;
      let stop = false;
      const load = (async () => {
        while (!stop) {
          try {
            const res = await proxyRequest(via(target), 'GET', '/during-restart');
            if (res.statusCode === 200 && (await readAll(res)).toString() === 'served /during-restart') served++;
            else failures++;
          } catch {
            failures++;
          }
        }
      })();
      // Restart replicas A and B one after the other (graceful: drain, then a new instance).
      for (const i of [0, 1]) {
        const old = replicas[i]!;
        await old.shutdown(3000);
        const fresh = new KasApp({ config: stack.kas.config, logger: createLogger({ name: 'kas', level: 'silent' }) });
        await fresh.start();
        replicas[i] = fresh;
        await waitFor(() => fresh.registry.connectionCount + replicas[2]!.registry.connectionCount >= 1, 'the agent to reconnect');
      }
      stop = true;
      await load;
      expect(served).toBeGreaterThan(0);
      expect(failures).toBe(0);
      // The watches whose clients were connected to the restarted replicas A and B ended with them.
      const within = (p: Promise<unknown>, what: string) => Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error(what)), 20_000))]);
      await within(Promise.all([watchesEnded[0], watchesEnded[1]]), 'a long watch through a restarted replica hung');
      // The one through C still runs on the agent's tunnel; it ends when the agent goes.
      await stack.agent!.stop();
      await within(watchesEnded[2]!, 'a long watch hung after its agent left');
    } finally {
      await stack.agent?.stop();
      await lb.close();
    }
  }, 90_000);
});

describe('the per-token connection rate limit', () => {
  test('connections beyond the limit in a minute are refused with 429 and counted', async () => {
    const upstream = await startFakeKubeApi({ handler: (_req, res) => res.end('ok') });
    const stack = await startStack({ upstream, startAgent: false, kas: { agent: { listen: { connections_per_token_per_minute: 3 } } } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        statuses.push(
          await new Promise<number>((resolve) => {
            const req = tls.connect({ host: '127.0.0.1', port: Number(stack.kas.addresses.agent!.split(':')[1]), ca: stack.proxyCa, servername: 'localhost' }, () => {
              req.write(`GET / HTTP/1.1\r\nHost: kas\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nAuthorization: Bearer ${stack.agentToken}\r\n\r\n`);
            });
            req.once('data', (d: Buffer) => {
              resolve(Number(/^HTTP\/1.1 (\d+)/.exec(d.toString())?.[1] ?? 0));
              req.destroy();
            });
            req.on('error', () => resolve(0));
          }),
        );
      }
      expect(statuses).toEqual([101, 101, 101, 429, 429]);
      const metrics = await (await fetch(`http://${stack.kas.addresses.observability}/metrics`)).text();
      expect(metrics).toContain('kas_agent_connection_rate_limited_total 2');
    } finally {
      await stack.close();
      await upstream.close();
    }
  });
});

describe('shared negative caches of GitLab answers', () => {
  test('a token GitLab refused on one replica is refused by another without asking GitLab again', async () => {
    const { startFakeGitLab } = await import('../support/fake-gitlab.js');
    const gl = await startFakeGitLab();
    gl.addProject({ id: 42, fullPath: 'acme/clusters' });
    gl.addAgent({ id: 1, name: 'prod', projectId: 42, token: 'glagent-the-real-one-0123456789' });
    const redis = await startRedis();
    const upstream = await startFakeKubeApi({ handler: (_req, res) => res.end('ok') });
    const secretFile = join(process.env.TMPDIR ?? '/tmp', `kas-private-neg-${process.pid}.secret`);
    writeFileSync(secretFile, `${secret.toString('base64')}\n`);
    const stack = await startStack({
      upstream,
      startAgent: false,
      gitlab: { url: gl.url, caPem: gl.caPem, secretFileContent: gl.secretFileContent, repositoryToken: gl.repositoryToken, agentToken: 'glagent-the-real-one-0123456789' },
      kas: { redis: { server: { address: redis.address }, key_prefix: `neg-${process.pid}` }, private_api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } } },
    });
    const other = new KasApp({ config: stack.kas.config, logger: createLogger({ name: 'kas', level: 'silent' }) });
    await other.start();
    try {
      const attempt = (app: KasApp) =>
        new Promise<number>((resolve) => {
          const req = tls.connect({ host: '127.0.0.1', port: Number(app.addresses.agent!.split(':')[1]), ca: stack.proxyCa, servername: 'localhost' }, () => {
            req.write(`GET / HTTP/1.1\r\nHost: kas\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nAuthorization: Bearer glagent-stolen-or-revoked\r\n\r\n`);
          });
          req.once('data', (d: Buffer) => {
            resolve(Number(/^HTTP\/1.1 (\d+)/.exec(d.toString())?.[1] ?? 0));
            req.destroy();
          });
          req.on('error', () => resolve(0));
        });
      expect(await attempt(stack.kas)).toBe(401);
      expect(await attempt(other)).toBe(401);
      expect(gl.callsTo('/internal/kubernetes/agent_info').length).toBe(1);
    } finally {
      await other.stop();
      await stack.close();
      await upstream.close();
      await redis.close();
      await gl.close();
    }
  });
});
