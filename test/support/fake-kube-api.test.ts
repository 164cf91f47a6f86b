/**
 * The fake Kubernetes API server against the real kubectl (1.32, on the PATH): discovery, get, watch,
 * create/delete, exec over WebSocket and SPDY/3.1, port-forward over WebSocket and SPDY/3.1.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { testCertificate } from './certificate.js';
import { FAKE_KUBERNETES_VERSION, startFakeKubeApi, type FakeKubeApi, type RecordedRequest } from './fake-kube-api.js';
import { rawHeaderValues } from './headers.js';
import { KUBECTL_TIMEOUT_MS, Kubectl, assertStdout, assertSucceeded, explain } from './kubectl.js';
import { echoThroughPort } from './streams.js';
import { waitFor } from './wait.js';

let api: FakeKubeApi;
let k: Kubectl;

beforeAll(async () => {
  api = await startFakeKubeApi({ tls: true });
  k = await Kubectl.create({ server: api.url, caPem: api.caPem, token: api.token });
});

afterEach(() => k?.killAll());

afterAll(async () => {
  await api?.close();
  await k?.cleanup();
});

const kubectl = (...a: Parameters<Kubectl['run']>) => k.run(...a);
const startKubectl = (...a: Parameters<Kubectl['start']>) => k.start(...a);

function header(r: RecordedRequest, name: string): string | undefined {
  return rawHeaderValues(r.rawHeaders, name)[0];
}

function newRequestsSince(count: number): RecordedRequest[] {
  return api.requests.slice(count);
}

const echoThroughPortForward = (port: number, payload: Buffer) => echoThroughPort(port, payload, KUBECTL_TIMEOUT_MS);

describe('fake Kubernetes API server with the real kubectl', () => {
  test('get ns lists the namespaces, sending the bearer token', async () => {
    const before = api.requests.length;
    const r = await kubectl(['get', 'ns']);
    assertStdout(r, /^default\s+Active/m);
    assertStdout(r, /^kube-system\s+Active/m);
    const list = newRequestsSince(before).find((q) => q.method === 'GET' && q.url.startsWith('/api/v1/namespaces'));
    if (!list) throw new Error(`no namespace list request recorded; saw ${newRequestsSince(before).map((q) => `${q.method} ${q.url}`).join(', ')}`);
    expect(header(list, 'Authorization')).toBe(`Bearer ${api.token}`);
    expect(list.bodyLength).toBe(0);
  });

  test('get pods shows the demo pod Running', async () => {
    const r = await kubectl(['get', 'pods']);
    assertStdout(r, /^demo\s+1\/1\s+Running\s+0/m);
  });

  test('create, get and delete a configmap', async () => {
    const before = api.requests.length;
    assertStdout(await kubectl(['create', 'configmap', 'x', '--from-literal=a=b']), 'configmap/x created');
    const post = newRequestsSince(before).find((q) => q.method === 'POST');
    expect(post?.url).toMatch(/^\/api\/v1\/namespaces\/default\/configmaps/);
    expect(post?.bodyLength).toBeGreaterThan(0);

    const value = await kubectl(['get', 'configmap', 'x', '-o', 'jsonpath={.data.a}']);
    assertSucceeded(value);
    if (value.stdout !== 'b') throw new Error(`expected the configmap's data.a to be "b": ${explain(value)}`);

    assertStdout(await kubectl(['delete', 'configmap', 'x']), 'configmap "x" deleted');
    const gone = await kubectl(['get', 'configmap', 'x']);
    if (gone.code === 0 || !gone.stderr.includes('NotFound')) throw new Error(`expected NotFound after delete: ${explain(gone)}`);
  });

  test('a wrong token is refused with 401', async () => {
    const wrong = await k.writeKubeconfig(path.join(k.dir, 'kubeconfig-wrong-token'), { server: api.url, caPem: api.caPem, token: 'not-the-token' });
    const r = await kubectl(['get', 'ns'], { config: wrong });
    if (r.code === 0 || !/Unauthorized/.test(r.stderr)) throw new Error(`expected Unauthorized: ${explain(r)}`);
  });

  const transports: Array<{ name: string; env: Record<string, string>; method: string; upgrade: RegExp }> = [
    { name: 'WebSocket (v5.channel.k8s.io)', env: {}, method: 'GET', upgrade: /^websocket$/i },
    { name: 'SPDY/3.1', env: { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' }, method: 'POST', upgrade: /^SPDY\/3\.1$/ },
  ];

  test.each(transports)('exec over $name prints the command', async ({ env, method, upgrade }) => {
    const before = api.requests.length;
    const r = await kubectl(['exec', 'demo', '--', 'echo', 'hi'], { env });
    assertSucceeded(r);
    if (r.stdout !== 'echo hi\n') throw new Error(`expected stdout "echo hi\\n": ${explain(r)}`);
    const upgrades = newRequestsSince(before).filter((q) => q.upgrade);
    // Exactly one upgrade: no fallback from WebSocket to SPDY.
    expect(upgrades.map((q) => `${q.method} ${q.url.split('?')[0]}`)).toEqual([`${method} /api/v1/namespaces/default/pods/demo/exec`]);
    expect(header(upgrades[0]!, 'Upgrade')).toMatch(upgrade);
    expect(upgrades[0]!.url).toContain('command=echo&command=hi');
  });

  test.each(transports)('exec -i over $name echoes stdin', async ({ env }) => {
    const r = await kubectl(['exec', '-i', 'demo', '--', 'cat'], { env, input: 'hello from stdin' });
    assertSucceeded(r);
    if (r.stdout !== 'cat\nhello from stdin') throw new Error(`expected the command line then the echoed stdin: ${explain(r)}`);
  });

  test.each(transports)('exec over $name reports a non-zero exit code', async ({ env }) => {
    const r = await kubectl(['exec', 'demo', '--', 'exit', '3'], { env });
    if (r.code !== 3) throw new Error(`expected kubectl to exit with 3: ${explain(r)}`);
  });

  test('get ns -w shows a namespace added while it runs', async () => {
    const watch = startKubectl(['get', 'ns', '-w']);
    await watch.waitFor(/^kube-public\s/m, 'the initial namespace list');
    api.addNamespace('late');
    await watch.waitFor(/^late\s+Active/m, 'the watch event for namespace "late"');
    if (!watch.running()) throw new Error(`expected the watch to keep running: ${watch.describe()}`);
    const watchRequest = api.requests.find((q) => /^\/api\/v1\/namespaces\?.*watch=(true|1)/.test(q.url));
    expect(watchRequest).toBeDefined();
    watch.child.kill('SIGKILL');
  });

  test.each<{ name: string; env: Record<string, string>; method: string }>([
    { name: 'WebSocket (SPDY tunnelled)', env: {}, method: 'GET' },
    { name: 'SPDY/3.1', env: { KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' }, method: 'POST' },
  ])('port-forward over $name reaches an echo server', async ({ env, method }) => {
    const before = api.requests.length;
    const pf = startKubectl(['port-forward', 'pod/demo', ':8080'], env);
    const m = await pf.waitFor(/Forwarding from 127\.0\.0\.1:(\d+) -> 8080/, 'the port-forward listener');
    const port = Number(m[1]);
    for (const payload of [Buffer.from('ping'), Buffer.alloc(256 * 1024, 'x')]) {
      const echoed = await echoThroughPortForward(port, payload);
      if (!echoed.equals(payload)) throw new Error(`expected ${payload.length} bytes echoed, got ${echoed.length}: ${pf.describe()}`);
    }
    const upgrades = newRequestsSince(before).filter((q) => q.upgrade);
    expect(upgrades.map((q) => `${q.method} ${q.url.split('?')[0]}`)).toEqual([`${method} /api/v1/namespaces/default/pods/demo/portforward`]);
    if (!pf.running()) throw new Error(`expected port-forward to keep running: ${pf.describe()}`);
    pf.child.kill('SIGKILL');
  });
});

describe('fake Kubernetes API server over plain HTTP', () => {
  let plain: FakeKubeApi | undefined;
  afterEach(async () => {
    await plain?.close();
    plain = undefined;
  });

  function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      http
        .get(url, { headers }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });
  }

  test('requires the token unless allowAnonymous', async () => {
    plain = await startFakeKubeApi({ tls: false, token: 't0ken' });
    expect(plain.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const denied = await get(`${plain.url}/api/v1/namespaces`);
    expect(denied.status).toBe(401);
    expect(JSON.parse(denied.body)).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'Unauthorized', code: 401 });
    const ok = await get(`${plain.url}/api/v1/namespaces`, { Authorization: 'Bearer t0ken' });
    expect(ok.status).toBe(200);
    expect((JSON.parse(ok.body) as { items: Array<{ metadata: { name: string } }> }).items.map((i) => i.metadata.name)).toContain('default');
    await plain.close();

    plain = await startFakeKubeApi({ tls: false, allowAnonymous: true });
    expect((await get(`${plain.url}/api/v1/namespaces/default/pods/demo`)).status).toBe(200);
    expect((await get(`${plain.url}/api/v1/namespaces/default/pods/demo`, { Authorization: 'Bearer wrong' })).status).toBe(401);
  });

  test('close() ends open watches', async () => {
    plain = await startFakeKubeApi({ tls: false, allowAnonymous: true });
    const server = plain;
    const lines: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      http
        .get(`${server.url}/api/v1/namespaces?watch=1`, (res) => {
          res.setEncoding('utf8').on('data', (d: string) => {
            lines.push(...d.split('\n').filter(Boolean));
            if (lines.length === 3) server.addNamespace('added-while-watching');
            if (lines.length === 4) void server.close();
          });
          res.on('close', () => resolve());
          res.on('error', () => resolve());
        })
        .on('error', reject);
    });
    await ended;
    expect(lines.map((l) => (JSON.parse(l) as { type: string; object: { metadata: { name: string } } }).object.metadata.name)).toEqual(['default', 'kube-system', 'kube-public', 'added-while-watching']);
  });

  test('close() ends upgraded connections (WebSocket exec, SPDY)', async () => {
    plain = await startFakeKubeApi({ tls: false, allowAnonymous: true });
    const server = plain;
    const base = server.url.replace(/^http/, 'ws');
    const ws = new WebSocket(`${base}/api/v1/namespaces/default/pods/demo/exec?command=cat&stdin=true&stdout=true`, ['v5.channel.k8s.io']);
    const firstMessage = new Promise<Buffer>((resolve, reject) => {
      ws.once('message', (d: Buffer) => resolve(d));
      ws.once('error', reject);
    });
    const wsClosed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    const stdout = await firstMessage;
    expect(ws.protocol).toBe('v5.channel.k8s.io');
    expect(stdout[0]).toBe(1);
    expect(stdout.subarray(1).toString()).toBe('cat\n');

    const spdy = net.connect(Number(new URL(server.url).port), '127.0.0.1');
    const spdyClosed = new Promise<void>((resolve) => spdy.once('close', () => resolve()));
    const switched = new Promise<string>((resolve) => spdy.once('data', (d: Buffer) => resolve(d.toString('latin1'))));
    spdy.write('POST /api/v1/namespaces/default/pods/demo/portforward HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n');
    expect(await switched).toMatch(/^HTTP\/1\.1 101 .*X-Stream-Protocol-Version: portforward\.k8s\.io/s);

    await server.close();
    await Promise.all([wsClosed, spdyClosed]);
    expect(server.requests.filter((q) => q.upgrade).map((q) => q.method)).toEqual(['GET', 'POST']);
  });
});

describe('fake Kubernetes API server: prefix, probes and a test\'s own handler', () => {
  let api2: FakeKubeApi | undefined;
  afterEach(async () => {
    await api2?.close();
    api2 = undefined;
  });

  function request(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end(init.body);
    });
  }

  test('under a prefix: url carries it, routes answer below it, anything else is a 404', async () => {
    api2 = await startFakeKubeApi({ tls: false, prefix: '/k8s', token: 't' });
    expect(api2.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/k8s$/);
    const auth = { Authorization: 'Bearer t' };
    const version = await request(`${api2.url}/version`, { headers: auth });
    expect(JSON.parse(version.body)).toMatchObject({ gitVersion: FAKE_KUBERNETES_VERSION });
    const origin = new URL(api2.url).origin;
    expect((await request(`${origin}/version`, { headers: auth })).status).toBe(404);
    expect(api2.requestsAt('/version').map((r) => r.url)).toEqual(['/k8s/version']);
  });

  test('probe routes: /echo echoes with repeated headers and the body hash; /slow waits for release', async () => {
    api2 = await startFakeKubeApi({ tls: false, token: 't' });
    const echo = await request(`${api2.url}/echo`, { method: 'POST', headers: { Authorization: 'Bearer t' }, body: 'hello' });
    expect(echo.status).toBe(200);
    expect(echo.body).toBe('hello');
    expect(echo.headers['x-multi']).toBe('one, two');
    expect(api2.requestsAt('/echo')[0]).toMatchObject({ method: 'POST', bodyLength: 5, bodySha256: echo.headers['x-seen-sha256'] });
    const slow = request(`${api2.url}/slow`, { headers: { Authorization: 'Bearer t' } });
    await waitFor(() => api2!.requestsAt('/slow').length === 1, 'the /slow request to arrive');
    api2.release('slow');
    expect((await slow).body).toBe('done');
  });

  test('a handler of the test answers everything, without authentication; setHandler swaps it; record: false records nothing', async () => {
    api2 = await startFakeKubeApi({ tls: false, handler: (req, res) => res.end(`first ${req.url}`) });
    expect((await request(`${api2.url}/api/v1/namespaces`)).body).toBe('first /api/v1/namespaces');
    api2.setHandler((_req, res) => res.end('second'));
    expect((await request(`${api2.url}/anything`)).body).toBe('second');
    api2.setHandler(null);
    expect((await request(`${api2.url}/api/v1/namespaces`)).status).toBe(401);
    expect(api2.requests.map((r) => r.url)).toEqual(['/api/v1/namespaces', '/anything', '/api/v1/namespaces']);
    await api2.close();

    api2 = await startFakeKubeApi({ tls: false, record: false, handler: (_req, res) => res.end('ok') });
    expect((await request(`${api2.url}/x`)).body).toBe('ok');
    expect(api2.requests).toEqual([]);
  });

  test('with the test certificate by default: the kubeconfig it writes names the URL, the token and the CA', async () => {
    api2 = await startFakeKubeApi({ token: 'kc-token' });
    expect(api2.caPem).toBe((await testCertificate()).cert);
    const dir = mkdtempSync(path.join(tmpdir(), 'fake-kube-api-'));
    try {
      const text = readFileSync(api2.writeKubeconfig(dir), 'utf8');
      expect(text).toContain(`server: ${api2.url}`);
      expect(text).toContain('token: kc-token');
      expect(text).toContain(`certificate-authority-data: ${Buffer.from(api2.caPem).toString('base64')}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
