/**
 * The real kubectl through kas (TLS, `--token pat:<id>:<token>`) and agentk to a fake Kubernetes
 * API server: get, watch, create/delete, exec over WebSocket and SPDY, port-forward.
 */
import path from 'node:path';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { rawHeaderValues } from '../support/headers.js';
import { KUBECTL_TIMEOUT_MS, Kubectl, assertStdout, assertSucceeded, explain } from '../support/kubectl.js';
import { proxyRequest, startStack, type Stack } from '../support/stack.js';
import { echoThroughPort, readAll } from '../support/streams.js';

let api: FakeKubeApi;
let stack: Stack;
let k: Kubectl;

beforeAll(async () => {
  api = await startFakeKubeApi({ tls: true });
  stack = await startStack({ upstream: api });
  k = await Kubectl.create({ server: stack.proxyUrl, caPem: stack.proxyCa, token: `pat:1:${stack.proxyToken}` });
});

afterEach(() => k?.killAll());

afterAll(async () => {
  await k?.cleanup();
  await stack?.close();
  await api?.close();
});

describe('kubectl through kas and agentk', () => {
  test('get ns and get pods; the API server sees the agent token, not the kubectl one', async () => {
    const before = api.requests.length;
    assertStdout(await k.run(['get', 'ns']), /^default\s+Active/m);
    assertStdout(await k.run(['get', 'pods']), /^demo\s+1\/1\s+Running/m);
    const auth = api.requests.slice(before).map((r) => rawHeaderValues(r.rawHeaders, 'authorization')[0]);
    expect(new Set(auth)).toEqual(new Set([`Bearer ${api.token}`]));
  });

  test('get ns -w shows a namespace created while the watch is open', async () => {
    const watch = k.start(['get', 'ns', '-w']);
    await watch.waitFor(/^kube-public\s/m, 'the initial namespace list');
    api.addNamespace('created-during-watch');
    await watch.waitFor(/^created-during-watch\s+Active/m, 'the watch event through the tunnel');
    expect(watch.running()).toBe(true);
  });

  test('create and delete a configmap', async () => {
    assertStdout(await k.run(['create', 'configmap', 'through-kas', '--from-literal=a=b']), 'configmap/through-kas created');
    const value = await k.run(['get', 'configmap', 'through-kas', '-o', 'jsonpath={.data.a}']);
    assertSucceeded(value);
    if (value.stdout !== 'b') throw new Error(`expected data.a to be "b": ${explain(value)}`);
    assertStdout(await k.run(['delete', 'configmap', 'through-kas']), 'configmap "through-kas" deleted');
  });

  test.each<{ name: string; env: Record<string, string> }>([
    { name: 'WebSocket', env: {} },
    { name: 'SPDY/3.1', env: { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' } },
  ])('exec over $name, with stdin and the exit code', async ({ env }) => {
    const hi = await k.run(['exec', 'demo', '--', 'echo', 'hi'], { env });
    assertSucceeded(hi);
    if (hi.stdout !== 'echo hi\n') throw new Error(`expected "echo hi": ${explain(hi)}`);
    const cat = await k.run(['exec', '-i', 'demo', '--', 'cat'], { env, input: 'stdin through the tunnel' });
    assertSucceeded(cat);
    if (cat.stdout !== 'cat\nstdin through the tunnel') throw new Error(`expected stdin echoed: ${explain(cat)}`);
    const exit = await k.run(['exec', 'demo', '--', 'exit', '3'], { env });
    if (exit.code !== 3) throw new Error(`expected exit code 3: ${explain(exit)}`);
  });

  test('port-forward carries bytes both ways', async () => {
    const pf = k.start(['port-forward', 'pod/demo', ':8080']);
    const m = await pf.waitFor(/Forwarding from 127\.0\.0\.1:(\d+) -> 8080/, 'the port-forward listener');
    const payload = Buffer.alloc(300 * 1024, 'p');
    const echoed = await echoThroughPort(Number(m[1]), payload, KUBECTL_TIMEOUT_MS);
    expect(echoed.equals(payload)).toBe(true);
  });

  test('a wrong proxy token is refused with Unauthorized and never reaches the API server', async () => {
    const before = api.requests.length;
    const wrong = await k.writeKubeconfig(path.join(k.dir, 'wrong'), { server: stack.proxyUrl, caPem: stack.proxyCa, token: 'pat:1:not-the-token' });
    const r = await k.run(['get', 'ns'], { config: wrong });
    if (r.code === 0 || !/Unauthorized/i.test(r.stderr)) throw new Error(`expected Unauthorized: ${explain(r)}`);
    expect(api.requests.length).toBe(before);
  });
});

describe('kubectl through kas to an agent that is not connected', () => {
  let down: Stack;
  let kd: Kubectl;

  beforeAll(async () => {
    down = await startStack({ upstream: api, startAgent: false, kas: { agent: { kubernetes_api: { agent_wait_timeout: '1s' } } } });
    kd = await Kubectl.create({ server: down.proxyUrl, caPem: down.proxyCa, token: `pat:1:${down.proxyToken}` });
  });

  afterAll(async () => {
    await kd?.cleanup();
    await down?.close();
  });

  test('newer kubectl shows kas\'s message (its discovery reads error bodies raw), and requests after a vain wait are answered without waiting again', async () => {
    const result = await kd.run(['get', 'ns']);
    if (result.code === 0) throw new Error(`kubectl succeeded without an agent: ${explain(result)}`);
    expect(result.stderr).toContain('agent 1 is not connected');
    expect(result.stderr).not.toContain('("unknown")');
    // kubectl's discovery asks several times: the later requests were answered without a wait of their own.
    expect(result.stderr).toContain('kas did not wait again');
    const raw = await proxyRequest(down, 'GET', '/api/v1/namespaces');
    expect(raw.statusCode).toBe(502);
    expect(JSON.parse((await readAll(raw)).toString())).toMatchObject({ kind: 'Status', code: 502 });
  });

  test('once the agent connects, it is used at once even right after a vain wait', async () => {
    await down.startAgent();
    await down.waitForAgent();
    assertStdout(await kd.run(['get', 'ns']), /^default\s+Active/m);
  });
});
