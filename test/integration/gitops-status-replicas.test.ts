/**
 * GitOps apply results across kas replicas sharing a real Redis: a result an agent reported to
 * replica 1 is answered by replica 2 (which never had the agent), the results kept in Redis are
 * bounded per agent (max_results, max_bytes) and expire, and while Redis is down a replica answers
 * from its own memory and logs a warning.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { WebSocket } from 'ws';
import { encodeGitopsStatus, encodeGitopsStatusHead, type GitopsStatusWire } from '../../src/protocol/gitops-status.js';
import { Session } from '../../src/protocol/session.js';
import { replyOf } from '../../src/protocol/stream.js';
import { KasApp } from '../../src/broker/app.js';
import { RedisGitopsStatus } from '../../src/broker/gitops/status-redis.js';
import { FeatureRedis } from '../../src/broker/replicas/feature-redis.js';
import { createLogger } from '../../src/shared/logger.js';
import { WsTransport } from '../../src/shared/ws-transport.js';
import { apiGet, type EventsApi } from '../support/events-api.js';
import { gitlabToKasJwt } from '../support/fake-gitlab.js';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { LogCapture } from '../support/logs.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { startStack, type Stack } from '../support/stack.js';
import { waitFor } from '../support/wait.js';

const MAX_RESULTS = 3;

function status(projectId: string, over: Partial<GitopsStatusWire> = {}): GitopsStatusWire {
  return {
    project_id: projectId,
    commit: 'c'.repeat(40),
    trigger: 'snapshot',
    dry_run: 'none',
    started_at: new Date().toISOString(),
    duration_ms: 10,
    applied: 1,
    unchanged: 0,
    pruned: 0,
    failed: 0,
    objects: [{ group: '', kind: 'ConfigMap', namespace: 'default', name: 'a', action: 'created' }],
    objects_omitted: 0,
    errors: [],
    errors_omitted: 0,
    ...over,
  };
}

interface ApiProject extends GitopsStatusWire {
  received_at: string;
}

describe('GitOps apply results with several kas replicas and Redis', () => {
  let redis: TestRedis;
  let client: Redis;
  let upstream: FakeKubeApi;
  let stack: Stack;
  let second: KasApp;
  let secondLogs: LogCapture;
  let agent: Session;
  let dir: string;
  const prefix = `gitops-status-${process.pid}`;
  const secret = randomBytes(32);
  const apiOf = (app: KasApp): EventsApi => ({ address: app.addresses.api!, jwt: () => gitlabToKasJwt(secret) });

  async function projects(app: KasApp, agentId = 1): Promise<ApiProject[]> {
    const r = await apiGet(apiOf(app), `/api/v1/agents/${agentId}/gitops`);
    if (r.status !== 200) throw new Error(`GET gitops answered ${r.status}: ${r.body}`);
    return (JSON.parse(r.body) as { projects: ApiProject[] }).projects;
  }

  /** Reports a result as agentk does after an apply: one gitops_status stream, accepted. */
  async function report(s: GitopsStatusWire): Promise<void> {
    const stream = agent.openStream(encodeGitopsStatusHead({ projectId: s.project_id }), { data: encodeGitopsStatus(s), end: true });
    expect(await replyOf(stream)).toEqual({ accepted: true });
  }

  beforeAll(async () => {
    redis = await startRedis();
    client = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true });
    await client.connect();
    upstream = await startFakeKubeApi();
    dir = mkdtempSync(join(tmpdir(), 'kas-gitops-replicas-'));
    const secretFile = join(dir, 'secret');
    writeFileSync(secretFile, `${secret.toString('base64')}\n`);
    stack = await startStack({
      upstream,
      startAgent: false,
      kas: {
        redis: { server: { address: redis.address }, key_prefix: prefix },
        agent: { gitops_status: { max_results: MAX_RESULTS } },
        private_api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
        api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
      },
    });
    secondLogs = new LogCapture();
    second = new KasApp({ config: stack.kas.config, logger: createLogger({ name: 'kas', level: 'debug', destination: secondLogs }) });
    await second.start();
    // The agent, on replica 1 only: a client session of our own sending what agentk sends after an apply.
    const ws = new WebSocket(`wss://${stack.kas.addresses.agent}/`, { headers: { Authorization: `Bearer ${stack.agentToken}` }, ca: stack.proxyCa });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    agent = new Session(new WsTransport(ws), { role: 'client', hello: { agentVersion: 'test', podName: 'test', features: [] } });
    await agent.ready;
  }, 60_000);

  afterAll(async () => {
    agent?.close();
    await second?.stop().catch(() => undefined);
    await stack?.close();
    await upstream?.close();
    client?.disconnect();
    await redis?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a result reported to replica 1 is answered by replica 2, which never had the agent', async () => {
    expect(second.registry.connections(1)).toHaveLength(0);
    expect(await projects(second)).toEqual([]);
    await report(status('group/app', { commit: 'a'.repeat(40) }));
    await waitFor(async () => (await projects(second)).length === 1, 'replica 2 to answer the result', 20_000);
    const [remote] = await projects(second);
    const [local] = await projects(stack.kas);
    expect(remote!.project_id).toBe('group/app');
    expect(remote!.commit).toBe('a'.repeat(40));
    expect(remote).toEqual(local);
    // A newer result of the same project replaces it everywhere.
    await report(status('group/app', { commit: 'b'.repeat(40), applied: 0, unchanged: 1 }));
    await waitFor(async () => (await projects(second))[0]?.commit === 'b'.repeat(40), 'replica 2 to answer the newer result', 20_000);
    expect(await projects(second)).toHaveLength(1);
    // One hash per agent, with a TTL (agent.gitops_status.redis_ttl, 24 h by default).
    const key = `${prefix}:gitops_status:1`;
    expect(await client.hkeys(key)).toEqual(['group/app']);
    const ttl = await client.pttl(key);
    expect(ttl).toBeGreaterThan(23 * 3600_000);
    expect(ttl).toBeLessThanOrEqual(24 * 3600_000);
    // Another agent has no results.
    expect(await projects(second, 2)).toEqual([]);
  });

  test('Redis keeps at most max_results results per agent, the oldest dropped first', async () => {
    for (const p of ['group/b', 'group/c', 'group/d', 'group/e']) await report(status(p));
    const key = `${prefix}:gitops_status:1`;
    await waitFor(async () => (await client.hexists(key, 'group/e')) === 1, 'the last result in Redis', 20_000);
    expect((await client.hkeys(key)).sort()).toEqual(['group/c', 'group/d', 'group/e']);
    expect((await projects(second)).map((p) => p.project_id)).toEqual(['group/c', 'group/d', 'group/e']);
  });

  test('Redis keeps at most max_bytes of results per agent; the one just written always stays', async () => {
    const logs = new LogCapture();
    const shared = new FeatureRedis(new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true }), `${prefix}-bytes`, { logger: createLogger({ name: 'kas', level: 'debug', destination: logs }), what: 'GitOps status', onError: () => undefined });
    await shared.connect();
    try {
      const one = (p: string) => `${Date.now()}\n${JSON.stringify(status(p))}`.length;
      const store = new RedisGitopsStatus(shared, { maxResults: 100, maxBytes: one('p/1') * 2 + 10, ttlMs: 60_000 });
      const at = Date.now();
      for (const [i, p] of ['p/1', 'p/2', 'p/3'].entries()) expect(await store.put(9, new Date(at + i), status(p))).toBe(true);
      expect((await store.forAgent(9))!.map((s) => s.status.project_id)).toEqual(['p/2', 'p/3']);
      // A result larger than the bound alone is kept (the others go).
      const big = status('p/big', { objects: Array.from({ length: 100 }, (_, i) => ({ group: '', kind: 'ConfigMap', namespace: 'default', name: `cm-${i}`, action: 'created' as const })) });
      expect(await store.put(9, new Date(at + 10), big)).toBe(true);
      expect((await store.forAgent(9))!.map((s) => s.status.project_id)).toEqual(['p/big']);
      const ttl = await client.pttl(store.key(9));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60_000);
    } finally {
      await shared.close();
    }
  });

  test('while Redis is down a replica answers from its own memory and logs a warning', async () => {
    await redis.kill();
    try {
      await waitFor(async () => (await projects(stack.kas)).length === MAX_RESULTS, 'replica 1 to answer from memory', 20_000);
      expect((await projects(stack.kas)).map((p) => p.project_id)).toEqual(['group/c', 'group/d', 'group/e']);
      await waitFor(() => stack.kasLogs.text.includes('GitOps apply results answered from this replica\'s memory'), 'the warning on replica 1', 20_000);
      // Replica 2 never had the agent: nothing in its memory.
      expect(await projects(second)).toEqual([]);
    } finally {
      await redis.restart();
    }
    // Redis answers again (empty: the test server keeps nothing across a restart), and so does the API.
    await waitFor(async () => (await projects(stack.kas)).length === 0, 'replica 1 to answer from Redis again', 30_000);
    await waitFor(() => stack.kasLogs.text.includes('Redis answers again: GitOps status is shared'), 'the recovery log', 30_000);
  });
});
