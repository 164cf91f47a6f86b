/**
 * Three kas processes sharing a real Redis, behind a round-robin balancer; one agentk process with a
 * single connection. The replica holding the agent is killed with SIGKILL: agentk reconnects through
 * the balancer to a survivor within its backoff, requests through any surviving replica succeed
 * again, and the dead replica's entry in Redis vanishes by expiry (nobody removed it).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startBalancer } from '../test/support/balancer.js';
import { startRedis, type TestRedis } from '../test/support/redis.js';
import { testCertificate } from '../test/support/certificate.js';
import { startFakeKubeApi, type FakeKubeApi } from '../test/support/fake-kube-api.js';
import {  } from '../test/support/stack.js';
import { listenerAddress, startProcess, type ManagedProcess } from './support/processes.js';
import { waitFor } from '../test/support/wait.js';

const PROXY_TOKEN = 'proxy-token-for-the-crash-test';
const AGENT_TOKEN = 'glagent-crash-test-agent-token-0123';

interface Replica {
  proc: ManagedProcess;
  agent: string;
  proxy: string;
  privateApi: string;
  observability: string;
}

function get(proxy: string, ca: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = https.request(`https://${proxy}${path}`, { ca, agent: false, headers: { authorization: `Bearer pat:1:${PROXY_TOKEN}` }, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: 0, body }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

async function sessionsOf(r: Replica): Promise<number> {
  try {
    const text = await (await fetch(`http://${r.observability}/metrics`)).text();
    return Number(/^kas_agent_sessions (\d+)/m.exec(text)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The waits of this file: replicas restart and agents reconnect with backoff, so they are long and poll gently. */
const waitLong = (cond: () => Promise<boolean>, what: string) => waitFor(cond, what, 60_000, { intervalMs: 100 });

describe('a kas replica killed with SIGKILL', () => {
  let dir: string;
  let redis: TestRedis;
  let upstream: FakeKubeApi;
  const replicas: Replica[] = [];
  let agentk: ManagedProcess | null = null;
  let balancer: { address: string; close(): Promise<void> } | null = null;

  afterAll(async () => {
    await agentk?.stop();
    await Promise.all(replicas.map((r) => r.proc.stop()));
    await balancer?.close();
    await upstream?.close();
    await redis?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the agent reconnects to a survivor, requests succeed again, the dead entry expires', async () => {
    dir = mkdtempSync(join(tmpdir(), 'kas-crash-'));
    const file = (name: string, content: string) => {
      const p = join(dir, name);
      writeFileSync(p, content);
      return p;
    };
    redis = await startRedis();
    upstream = await startFakeKubeApi({ handler: (req, res) => res.end(`served ${req.url}`) });
    const cert = await testCertificate();
    const prefix = `crash-${process.pid}`;
    const config = {
      agent: {
        listen: { address: '127.0.0.1:0' },
        redis_conn_info_ttl: '3s',
        redis_conn_info_refresh: '1s',
        kubernetes_api: { listen: { address: '127.0.0.1:0', certificate_file: file('cert.pem', cert.cert), key_file: file('key.pem', cert.key) }, agent_wait_timeout: '20s' },
      },
      observability: { listen: { address: '127.0.0.1:0' } },
      private_api: { listen: { address: '127.0.0.1:0', authentication_secret_file: file('private.secret', `${randomBytes(32).toString('base64')}\n`) } },
      redis: { server: { address: redis.address }, key_prefix: prefix },
      standalone: {
        agents: [{ id: 1, name: 'crash-test', token_file: file('agent.token', `${AGENT_TOKEN}\n`) }],
        proxy_tokens: [{ token_file: file('proxy.token', `${PROXY_TOKEN}\n`), agents: [1] }],
      },
    };
    const configFile = file('kas.yaml', JSON.stringify(config));
    for (let i = 0; i < 3; i++) {
      const proc = startProcess(`kas-${i}`, process.execPath, ['dist/src/broker/main.js', '--config', configFile]);
      const [agent, proxy, privateApi, observability] = await Promise.all(
        (['agent', 'kubernetes_api', 'private_api', 'observability'] as const).map((l) => proc.waitForLine(listenerAddress(l), `kas-${i} to listen (${l})`)),
      );
      replicas.push({ proc, agent: agent!, proxy: proxy!, privateApi: privateApi!, observability: observability! });
    }
    balancer = await startBalancer(() => replicas.filter((r) => r.proc.running()).map((r) => r.agent));
    const kubeconfig = file(
      'kubeconfig.json',
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: upstream.url, 'certificate-authority-data': Buffer.from(upstream.caPem).toString('base64') } }],
        users: [{ name: 'u', user: { token: upstream.token } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
    agentk = startProcess('agentk', process.execPath, ['dist/src/agent/main.js', '--kas-address', `ws://${balancer.address}/`, '--token-file', join(dir, 'agent.token'), '--kubeconfig', kubeconfig, '--kas-connections', '1', '--observability-listen-address', '127.0.0.1:0']);

    let holder: Replica | undefined;
    await waitLong(async () => {
      for (const r of replicas) if ((await sessionsOf(r)) > 0) holder = r;
      return holder !== undefined;
    }, 'the agent to connect to one replica');
    const survivors = replicas.filter((r) => r !== holder);
    const through = survivors[0]!;
    const before = await get(through.proxy, cert.cert, '/before-the-crash');
    expect(before).toEqual({ status: 200, body: 'served /before-the-crash' });

    process.kill(holder!.proc.pid, 'SIGKILL');
    await holder!.proc.stop();
    const deadUrl = `ws://${holder!.privateApi}`;

    // agentk finds the dead connection (closed socket), backs off with jitter and reconnects to a survivor.
    await waitLong(async () => (await sessionsOf(survivors[0]!)) + (await sessionsOf(survivors[1]!)) > 0, 'agentk to reconnect to a surviving replica');
    for (const r of survivors) {
      const res = await get(r.proxy, cert.cert, '/after-the-crash');
      expect(res).toEqual({ status: 200, body: 'served /after-the-crash' });
    }

    // Nobody removed the dead replica's entry; it expires (the TTL is 3 s) and a replica that looks
    // the agent up (one that does not hold it) prunes it.
    const probe = new Redis(redis.port, '127.0.0.1');
    try {
      await waitFor(async () => {
        const reader = (await sessionsOf(survivors[0]!)) > 0 ? survivors[1]! : survivors[0]!;
        await get(reader.proxy, cert.cert, '/prune');
        return !Object.keys(await probe.hgetall(`${prefix}:agent_tunnels:1`)).includes(deadUrl);
      }, "the dead replica's entry to vanish", 30_000, { intervalMs: 100 });
    } finally {
      probe.disconnect();
    }
  }, 120_000);
});
