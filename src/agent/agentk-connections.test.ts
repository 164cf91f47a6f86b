/**
 * agentk's connections to kas: the pool size is kept, GOAWAY gets a replacement before the old
 * session closes, a refused token is retried with backoff without crashing, and an API server that
 * is down gives a 502 Status. Each test runs its own fake kas and agentk (plain ws).
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TunnelError } from '../protocol/errors.js';
import type { Agentk } from './app.js';
import { loadApiServerConfig } from './kubernetes-api/api-server.js';
import { httpGet, startTestAgent } from './testing/agent-fixture.js';
import type { LogCapture } from '../../test/support/logs.js';
import { FakeKas } from './testing/fake-kas.js';
import { startFakeKubeApi, writeKubeconfig, type FakeKubeApi } from '../../test/support/fake-kube-api.js';
import { freePort } from '../../test/support/ports.js';
import { readAll } from '../../test/support/streams.js';

/** Bounds a hang; the waits inside the tests fail sooner, with a message of their own. */
const TEST_TIMEOUT_MS = 15_000;

const TOKEN = 'right-token-5d2e';

let dir: string;
let api: FakeKubeApi;
let kas: FakeKas | null = null;
let agent: Agentk | null = null;
let logs: LogCapture;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentk-connections-'));
  api = await startFakeKubeApi({ tls: false, token: 'sa-token' });
});

afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await agent?.stop();
  await kas?.close();
  agent = null;
  kas = null;
});

async function start(options: { connections: number; token?: string; kubeconfig?: string }): Promise<void> {
  kas = await FakeKas.start({ token: TOKEN });
  ({ agent, logs } = await startTestAgent({
    kasAddress: kas.url,
    token: options.token ?? TOKEN,
    kasConnections: options.connections,
    apiServer: loadApiServerConfig({ kubeconfig: options.kubeconfig ?? api.writeKubeconfig(dir), context: 'fake' }),
  }));
}

test('the pool keeps --kas-connections sessions: a lost connection is replaced', async () => {
  await start({ connections: 3 });
  const k = kas!;
  await k.waitFor(() => k.openSessions.length === 3, 'agentk to open 3 sessions');
  await k.waitFor(() => agent!.openSessions === 3, 'agentk to count 3 open sessions');
  const victim = k.accepted[0]!;
  victim.ws.terminate();
  await k.waitFor(() => victim.session.state === 'closed', 'the killed session to close at kas');
  await k.waitFor(() => k.accepted.length === 4 && k.openSessions.length === 3, 'agentk to replace the lost connection');
  await k.waitFor(() => agent!.openSessions === 3, 'agentk to count 3 open sessions again');
  expect(k.unauthorized).toBe(0);
}, TEST_TIMEOUT_MS);

test('GOAWAY: agentk opens a replacement before the old session closes; the old one finishes its stream', async () => {
  await start({ connections: 1 });
  const k = kas!;
  const old = await k.session();
  const inflight = k.open(old, { method: 'GET', path: '/slow', headers: [], impersonate: null }, { end: true });
  await once(inflight, 'reply');
  const drained = old.drain('max connection age reached', 10_000);
  await k.waitFor(() => k.openSessions.length === 1 && k.openSessions[0] !== old, 'agentk to open a replacement session');
  expect(old.state).toBe('draining');
  api.release('slow');
  expect((await readAll(inflight)).toString()).toBe('done');
  await drained;
  expect(old.closeError).toBeNull();
  await k.waitFor(() => agent!.liveSessions === 1 && agent!.openSessions === 1, 'agentk to keep exactly its one session');
  const answer = await k.request({ method: 'GET', path: '/echo', headers: [], impersonate: null });
  expect(answer.status).toBe(200);
}, TEST_TIMEOUT_MS);

test('a refused token: agentk keeps retrying with backoff, stays alive and not ready, and says why without the token', async () => {
  await start({ connections: 2, token: 'wrong-token-0f9a' });
  const k = kas!;
  await k.waitFor(() => k.unauthorized >= 6, 'agentk to retry after 401 answers');
  expect(k.accepted).toHaveLength(0);
  expect(agent!.openSessions).toBe(0);
  expect((await httpGet(agent!.observabilityAddress, '/readiness')).status).toBe(503);
  expect((await httpGet(agent!.observabilityAddress, '/liveness')).status).toBe(200);
  expect((await httpGet(agent!.observabilityAddress, '/metrics')).body).toMatch(/agentk_tunnel_connect_attempts_total\{result="unauthorized"\} ([6-9]|\d\d+)/);
  const refusals = logs.entries.filter((e) => typeof e.msg === 'string' && e.msg.includes('kas refused the agent token (HTTP 401)'));
  expect(refusals.length).toBeGreaterThanOrEqual(6);
  expect(logs.entries.some((e) => e.msg === 'connecting to kas again after a delay')).toBe(true);
  expect(logs.text).not.toContain('wrong-token-0f9a');
}, TEST_TIMEOUT_MS);

test('a session kas closes with AUTH_REVOKED is logged as a token problem and retried with backoff', async () => {
  await start({ connections: 1 });
  const k = kas!;
  const first = await k.session();
  first.close(new TunnelError('AUTH_REVOKED', 'the agent token was revoked'));
  await k.waitFor(() => k.accepted.length === 2 && k.openSessions.length === 1, 'agentk to reconnect after the revocation');
  expect(logs.entries.some((e) => e.code === 'AUTH_REVOKED' && e.level === 50 && String(e.msg).includes('kas revoked the agent token'))).toBe(true);
}, TEST_TIMEOUT_MS);

test('an API server that is down: the request gets a 502 Status', async () => {
  const port = await freePort();
  const kubeconfig = writeKubeconfig(dir, `http://127.0.0.1:${port}`, 'sa-token');
  await start({ connections: 1, kubeconfig });
  const answer = await kas!.request({ method: 'GET', path: '/api/v1/namespaces', headers: [], impersonate: null });
  expect(answer.status).toBe(502);
  const status = JSON.parse(answer.body.toString()) as Record<string, unknown>;
  expect(status).toMatchObject({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'ServiceUnavailable', code: 502 });
  expect(status.message).toMatch(/ECONNREFUSED/);
}, TEST_TIMEOUT_MS);
