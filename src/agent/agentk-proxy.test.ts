/**
 * agentk serving the Kubernetes API: a real agentk (app.ts) connects over wss to a fake kas made
 * from the protocol; the fake kas opens `http` streams as kas's proxy would, and a fake API server
 * (HTTPS, behind a base path prefix, reached through a kubeconfig) answers them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HttpRequestHead } from '../protocol/http.js';
import { encodeRequestHead } from '../protocol/http.js';
import type { Session } from '../protocol/session.js';
import { generateSelfSignedCertificate, type CertificatePair } from '../shared/tls-cert.js';
import type { Agentk } from './app.js';
import { loadApiServerConfig } from './kubernetes-api/api-server.js';
import { httpGet, startTestAgent } from './testing/agent-fixture.js';
import type { LogCapture } from '../../test/support/logs.js';
import { FakeKas } from './testing/fake-kas.js';
import { FAKE_KUBERNETES_VERSION, startFakeKubeApi, type FakeKubeApi } from '../../test/support/fake-kube-api.js';
import { headerValues, rawHeaderValues } from '../../test/support/headers.js';
import { collectText, errorOf, readAll } from '../../test/support/streams.js';

/** Bounds a hang; the waits inside the tests fail sooner, with a message of their own. */
const TEST_TIMEOUT_MS = 15_000;

const KAS_TOKEN = 'kas-agent-token-7c1f';
const SA_TOKEN = 'agent-service-account-token-93ab';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let cert: CertificatePair;
let dir: string;
let kas: FakeKas;
let api: FakeKubeApi;
let agent: Agentk;
let logs: LogCapture;
let session: Session;

beforeAll(async () => {
  cert = await generateSelfSignedCertificate();
  dir = mkdtempSync(join(tmpdir(), 'agentk-proxy-'));
  kas = await FakeKas.start({ token: KAS_TOKEN, tls: cert, path: '/agent' });
  api = await startFakeKubeApi({ tls: cert, prefix: '/k8s', token: SA_TOKEN });
  const kubeconfig = api.writeKubeconfig(dir);
  ({ agent, logs } = await startTestAgent({
    kasAddress: kas.url,
    token: KAS_TOKEN,
    kasCaCert: cert.cert,
    kasHeaders: [['X-Tenant', 'blue']],
    kasConnections: 2,
    apiServer: loadApiServerConfig({ kubeconfig, context: 'fake' }),
    defaultMetrics: true,
  }));
  await kas.waitFor(() => kas.openSessions.length === 2, 'agentk to open its 2 sessions');
  session = kas.openSessions[0]!;
});

afterAll(async () => {
  await agent?.stop();
  await kas?.close();
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

function get(path: string, headers: Array<[string, string]> = [], impersonate: HttpRequestHead['impersonate'] = null): HttpRequestHead {
  return { method: 'GET', path, headers, impersonate };
}

test('the handshake tells kas who the agent is; the upgrade request carries the token and extra headers', () => {
  const first = kas.accepted[0]!;
  expect(first.headers.authorization).toBe(`Bearer ${KAS_TOKEN}`);
  expect(first.headers['x-tenant']).toBe('blue');
  expect(first.session.peerInfo).toMatchObject({
    podName: 'agentk-test-pod',
    podNamespace: 'gitlab-agent',
    kubernetesVersion: FAKE_KUBERNETES_VERSION,
    features: ['http', 'agent_config'],
    v: 1,
  });
  expect(typeof first.session.peerInfo?.agentVersion).toBe('string');
  expect(typeof first.session.peerInfo?.agentCommit).toBe('string');
}, TEST_TIMEOUT_MS);

test('a GET reaches the API server under its base path with the agent\'s token, not the client\'s', async () => {
  const before = api.requests.length;
  const answer = await kas.request(get('/echo?watch=false', [['Authorization', 'Bearer client-secret'], ['Accept', 'application/json'], ['Host', 'kas.example.com']]));
  expect(answer.status).toBe(200);
  expect(headerValues(answer.headers, 'X-Multi')).toEqual(['one', 'two']);
  const seen = api.requests.slice(before);
  expect(seen).toHaveLength(1);
  expect(seen[0]!.url).toBe('/k8s/echo?watch=false');
  expect(rawHeaderValues(seen[0]!.rawHeaders, 'authorization')).toEqual([`Bearer ${SA_TOKEN}`]);
  expect(rawHeaderValues(seen[0]!.rawHeaders, 'host')).toEqual([new URL(api.url).host]);
  expect(rawHeaderValues(seen[0]!.rawHeaders, 'accept')).toEqual(['application/json']);
}, TEST_TIMEOUT_MS);

test('a POST with a 5 MB body arrives byte-exact, and the 5 MB answer comes back byte-exact', async () => {
  const body = randomBytes(5 * 1024 * 1024);
  const stream = kas.open(session, { method: 'POST', path: '/echo', headers: [['Content-Type', 'application/octet-stream'], ['Content-Length', String(body.length)]], impersonate: null });
  const answer = readAll(stream);
  for (let off = 0; off < body.length; off += 256 * 1024) {
    if (!stream.write(body.subarray(off, off + 256 * 1024))) await once(stream, 'drain');
  }
  stream.end();
  const echoed = await answer;
  expect(stream.peerHead?.status).toBe(200);
  expect(echoed.length).toBe(body.length);
  expect(sha(echoed)).toBe(sha(body));
  const seen = api.requestsAt('/echo').at(-1)!;
  expect(seen.method).toBe('POST');
  expect(seen.bodySha256).toBe(sha(body));
}, TEST_TIMEOUT_MS);

test('a body without Content-Length (DELETE) goes chunked and arrives whole', async () => {
  const body = Buffer.from('{"kind":"DeleteOptions","propagationPolicy":"Foreground"}');
  const answer = await kas.request({ method: 'DELETE', path: '/echo', headers: [['Content-Type', 'application/json']], impersonate: null }, body);
  expect(answer.status).toBe(200);
  expect(answer.body.toString()).toBe(body.toString());
}, TEST_TIMEOUT_MS);

test('a GET with a body of unknown length (OPEN not final) reaches the API server with its body', async () => {
  // Regression: agentk once took "has a body" from the method, so a GET whose client sent a chunked
  // body (kas leaves the OPEN open for it) reached the API server without it.
  const body = Buffer.from('{"kind":"DeleteOptions","apiVersion":"v1"}');
  const stream = kas.open(session, { method: 'GET', path: '/echo', headers: [['Content-Type', 'application/json']], impersonate: null });
  const answer = readAll(stream);
  stream.write(body.subarray(0, 10));
  stream.end(body.subarray(10));
  const echoed = await answer;
  expect(stream.peerHead?.status).toBe(200);
  expect(echoed.toString()).toBe(body.toString());
  const seen = api.requestsAt('/echo').at(-1)!;
  expect(seen.method).toBe('GET');
  expect(seen.bodySha256).toBe(sha(body));
  // Framed once, either way: chunked while agentk streams it, or with its length when the whole body
  // was there before agentk sent the request (it may be: both chunks follow the OPEN at once).
  const te = rawHeaderValues(seen.rawHeaders, 'transfer-encoding');
  const cl = rawHeaderValues(seen.rawHeaders, 'content-length');
  expect(te.length === 0 ? cl : te).toEqual(te.length === 0 ? [String(body.length)] : ['chunked']);
  expect(te.length === 0 || cl.length === 0).toBe(true);
}, TEST_TIMEOUT_MS);

test('an informational 1xx (103 Early Hints) before the answer is not relayed: kas gets the final 200 and its body', async () => {
  const answer = await kas.request({ method: 'GET', path: '/early-hints', headers: [], impersonate: null });
  expect(answer.status).toBe(200);
  expect(answer.body.toString()).toBe('final');
  expect(headerValues(answer.headers, 'link')).toEqual([]);
}, TEST_TIMEOUT_MS);

test('a GET whose body came whole in the OPEN frame reaches the API server with it', async () => {
  const body = Buffer.from('{"kind":"Small"}');
  const answer = await kas.request({ method: 'GET', path: '/echo', headers: [], impersonate: null }, body);
  expect(answer.status).toBe(200);
  expect(answer.body.toString()).toBe(body.toString());
  expect(api.requestsAt('/echo').at(-1)!.bodySha256).toBe(sha(body));
}, TEST_TIMEOUT_MS);

test('a request whose OPEN ended the stream reaches the API server without a body, whatever its method', async () => {
  const answer = await kas.request({ method: 'POST', path: '/echo', headers: [['Content-Length', '0']], impersonate: null });
  expect(answer.status).toBe(200);
  const seen = api.requestsAt('/echo').at(-1)!;
  expect(seen.method).toBe('POST');
  expect(seen.bodyLength).toBe(0);
  expect(rawHeaderValues(seen.rawHeaders, 'content-length')).toEqual(['0']);
  expect(rawHeaderValues(seen.rawHeaders, 'transfer-encoding')).toEqual([]);
}, TEST_TIMEOUT_MS);

test('impersonation from kas becomes Impersonate-* headers exactly: user, uid, one per group, escaped extra keys', async () => {
  const before = api.requests.length;
  const answer = await kas.request(
    get('/echo', [['Accept', 'application/json']], {
      username: 'gitlab:user:jane',
      uid: 'uid-42',
      groups: ['gitlab:project:7', 'gitlab:developers'],
      extra: { 'agent.gitlab.com/id': ['12'], 'agent.gitlab.com/config_project_id': ['7', '8'] },
    }),
  );
  expect(answer.status).toBe(200);
  const raw = api.requests.slice(before)[0]!.rawHeaders;
  const impersonation: string[][] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase().startsWith('impersonate-')) impersonation.push([raw[i]!, raw[i + 1]!]);
  expect(impersonation).toEqual([
    ['Impersonate-User', 'gitlab:user:jane'],
    ['Impersonate-Uid', 'uid-42'],
    ['Impersonate-Group', 'gitlab:project:7'],
    ['Impersonate-Group', 'gitlab:developers'],
    ['Impersonate-Extra-agent.gitlab.com%2Fid', '12'],
    ['Impersonate-Extra-agent.gitlab.com%2Fconfig_project_id', '7'],
    ['Impersonate-Extra-agent.gitlab.com%2Fconfig_project_id', '8'],
  ]);
}, TEST_TIMEOUT_MS);

test('client Impersonate-* headers together with kas impersonation are refused with a 403 Status and reach nothing', async () => {
  const before = api.requests.length;
  const answer = await kas.request(get('/echo', [['Impersonate-User', 'system:admin']], { username: 'jane' }));
  expect(answer.status).toBe(403);
  expect(JSON.parse(answer.body.toString())).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Forbidden', code: 403 });
  expect(JSON.parse(answer.body.toString()).message).toContain('nested impersonation is not allowed');
  expect(api.requests.length).toBe(before);
}, TEST_TIMEOUT_MS);

test('client Impersonate-* headers without kas impersonation pass through (the API server checks the agent\'s RBAC)', async () => {
  const before = api.requests.length;
  await kas.request(get('/echo', [['Impersonate-User', 'someone']]));
  expect(rawHeaderValues(api.requests.slice(before)[0]!.rawHeaders, 'impersonate-user')).toEqual(['someone']);
}, TEST_TIMEOUT_MS);

test('a streamed (watch) response arrives chunk by chunk, before the API server ends it', async () => {
  const stream = kas.open(session, get('/stream?watch=true'), { end: true });
  const got = collectText(stream);
  await got.until('{"type":"ADDED"}\n');
  expect(stream.readableEnded).toBe(false);
  api.release('stream');
  await once(stream, 'end');
  expect(got.text).toBe('{"type":"ADDED"}\n{"type":"MODIFIED"}\n');
}, TEST_TIMEOUT_MS);

test('resetting the tunnel stream aborts the upstream request at once', async () => {
  const stream = kas.open(session, get('/hang'), { end: true });
  const got = collectText(stream);
  await got.until('partial');
  stream.reset('CANCELLED', 'the kubectl user pressed ctrl-c');
  await api.hangAborted;
}, TEST_TIMEOUT_MS);

test('an API server that fails after the response head: the stream is reset with UPSTREAM_ERROR', async () => {
  const stream = kas.open(session, get('/die'), { end: true });
  const err = await errorOf(stream);
  expect(stream.peerHead?.status).toBe(200);
  expect(err.code).toBe('UPSTREAM_ERROR');
  expect(err.remote).toBe(true);
}, TEST_TIMEOUT_MS);

test('an upgrade (SPDY exec) carries raw bytes both ways; the client ends first, the API server answers and ends', async () => {
  const before = api.requests.length;
  const stream = kas.open(session, get('/exec/client-first?command=sh', [['Connection', 'Upgrade'], ['Upgrade', 'SPDY/3.1'], ['X-Stream-Protocol-Version', 'v4.channel.k8s.io'], ['Authorization', 'Bearer client-secret']]));
  const got = collectText(stream);
  await once(stream, 'reply');
  expect(stream.peerHead?.status).toBe(101);
  expect(headerValues(stream.peerHead!.headers as Array<[string, string]>, 'upgrade')).toEqual(['SPDY/3.1']);
  expect(headerValues(stream.peerHead!.headers as Array<[string, string]>, 'connection')).toEqual(['Upgrade']);
  const raw = api.requests.slice(before)[0]!.rawHeaders;
  expect(rawHeaderValues(raw, 'upgrade')).toEqual(['SPDY/3.1']);
  expect(rawHeaderValues(raw, 'connection')).toEqual(['Upgrade']);
  expect(rawHeaderValues(raw, 'authorization')).toEqual([`Bearer ${SA_TOKEN}`]);
  stream.write('ping;');
  await got.until('ping;');
  stream.write('pong;');
  await got.until('ping;pong;');
  stream.end();
  await once(stream, 'end');
  expect(got.text).toBe('ping;pong;bye');
}, TEST_TIMEOUT_MS);

test('an upgrade (WebSocket exec) where the API server ends first: the client may still send, then end', async () => {
  const stream = kas.open(session, get('/exec/server-first', [['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Protocol', 'v5.channel.k8s.io']]));
  const got = collectText(stream);
  await once(stream, 'end');
  expect(stream.peerHead?.status).toBe(101);
  expect(got.text).toBe('hello-and-goodbye');
  stream.end('sent-after-the-server-ended');
  expect(await api.serverFirstReceived).toBe('sent-after-the-server-ended');
}, TEST_TIMEOUT_MS);

test('an upgrade the API server answers with a normal response is relayed like any response', async () => {
  const answer = await kas.request(get('/exec/refused', [['Connection', 'Upgrade'], ['Upgrade', 'websocket']]));
  expect(answer.status).toBe(403);
  expect(JSON.parse(answer.body.toString())).toMatchObject({ kind: 'Status', code: 403 });
}, TEST_TIMEOUT_MS);

test.each([['//evil.example/x'], ['http://evil/'], ['https://evil.example/api'], ['/api/v1/../../../etc'], ['/api/%2e%2e/x'], ['evil']])(
  'the path %s is refused with a 400 Status and reaches nothing',
  async (path) => {
    const before = api.requests.length;
    const stream = session.openStream(encodeRequestHead({ method: 'GET', path, headers: [], impersonate: null }), { end: true });
    const [reply] = (await once(stream, 'reply')) as [{ status: number }];
    const body = await readAll(stream);
    expect(reply.status).toBe(400);
    expect(JSON.parse(body.toString())).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'BadRequest', code: 400 });
    expect(api.requests.length).toBe(before);
  },
  TEST_TIMEOUT_MS,
);

test('a stream of a type agentk does not serve is reset with PROTOCOL_ERROR; the session goes on', async () => {
  const stream = session.openStream({ t: 'gitops', manifest: 'x' }, { end: true });
  const err = await errorOf(stream);
  expect(err.code).toBe('PROTOCOL_ERROR');
  const answer = await kas.request(get('/echo'), undefined, session);
  expect(answer.status).toBe(200);
}, TEST_TIMEOUT_MS);

test('observability: liveness, readiness with sessions open, metrics, and the listening log line', async () => {
  const address = agent.observabilityAddress;
  expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
  expect(logs.entries.find((e) => e.listener === 'observability')).toMatchObject({ address, msg: 'listening' });
  expect((await httpGet(address, '/liveness')).status).toBe(200);
  expect((await httpGet(address, '/readiness')).status).toBe(200);
  const metrics = (await httpGet(address, '/metrics')).body;
  expect(metrics).toContain('agentk_tunnel_sessions 2');
  expect(metrics).toMatch(/agentk_streams_served_total\{outcome="ok"\} [1-9]/);
  expect(metrics).toMatch(/agentk_streams_served_total\{outcome="forbidden"\} [1-9]/);
  expect(metrics).toMatch(/agentk_kubernetes_api_bytes_total\{direction="request"\} [1-9]/);
  expect(metrics).toMatch(/agentk_tunnel_connect_attempts_total\{result="ok"\} 2/);
  expect(metrics).toContain('process_cpu_user_seconds_total');
}, TEST_TIMEOUT_MS);

test('no log line carries the agent token or the service account token', () => {
  expect(logs.text.length).toBeGreaterThan(0);
  expect(logs.text).not.toContain(KAS_TOKEN);
  expect(logs.text).not.toContain(SA_TOKEN);
  expect(logs.text).not.toContain('client-secret');
}, TEST_TIMEOUT_MS);
