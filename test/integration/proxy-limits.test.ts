/**
 * What the Kubernetes API proxy refuses for its size, end to end on loopback: request heads over the
 * agent's announced limit (431 at once, not retried) and request bodies over
 * agent.kubernetes_api.max_request_body_size (413, counted as they stream for chunked bodies).
 */
import type http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { readAll } from '../support/streams.js';
import { proxyRequest, startStack, type Stack } from '../support/stack.js';
import { waitFor } from '../support/wait.js';

const BODY_LIMIT = 64 * 1024;
/** What agentk announces as its largest stream head: below kas's own HTTP header limit (16 KiB). */
const AGENT_MAX_HEADER = 8 * 1024;

interface Upstreamed {
  url: string;
  received: number;
  /** True once the upstream request ended without its answer being completed (aborted). */
  aborted: boolean;
}

describe('Kubernetes API proxy limits', () => {
  let upstream: FakeKubeApi;
  let stack: Stack;
  const seen: Upstreamed[] = [];
  let upgradedBytes = 0;

  beforeAll(async () => {
    upstream = await startFakeKubeApi({
      handler: (req, res) => {
        const entry: Upstreamed = { url: req.url!, received: 0, aborted: false };
        // agentk's own GET /version (its registration with kas, on each session and every 5
        // minutes) is not a request of these tests: only requests sent through kas are recorded.
        if (req.url !== '/version') seen.push(entry);
        res.on('close', () => {
          entry.aborted = !res.writableFinished;
        });
        req.on('data', (c: Buffer) => {
          entry.received += c.length;
        });
        // /hold answers nothing: the request stays open until kas or the client ends it.
        if (req.url!.startsWith('/hold')) return;
        req.on('end', () => res.end(JSON.stringify({ length: entry.received })));
      },
      onUpgrade: (_req, socket) => {
        socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n');
        socket.on('data', (c: Buffer) => {
          upgradedBytes += c.length;
        });
      },
    });
    stack = await startStack({
      upstream,
      kas: { agent: { kubernetes_api: { agent_wait_timeout: '1s', max_request_body_size: BODY_LIMIT } } },
      agent: { limits: { maxHeaderSize: AGENT_MAX_HEADER } },
    });
  });

  afterAll(async () => {
    await stack?.close();
    await upstream?.close();
  });

  beforeEach(() => {
    seen.length = 0;
  });

  async function routedLocally(): Promise<number> {
    const text = await (await fetch(`http://${stack.kas.addresses.observability}/metrics`)).text();
    return Number(/kas_routed_requests_total\{via="local"\} (\d+)/.exec(text)?.[1] ?? '0');
  }

  /** A POST whose body the test writes itself (`req`), and its response once the head arrives. */
  function upload(path: string, headers: http.OutgoingHttpHeaders): { req: http.ClientRequest; response: Promise<http.IncomingMessage> } {
    let req!: http.ClientRequest;
    const response = new Promise<http.IncomingMessage>((resolve, reject) => {
      req = https.request(new URL(path, stack.proxyUrl), { method: 'POST', headers: { authorization: stack.bearer(), ...headers }, ca: stack.proxyCa, agent: false }, resolve);
      req.on('error', reject);
    });
    return { req, response };
  }

  test('request headers over the agent\'s limit get 431 at once, and no other session is tried', async () => {
    // Regression: the open failed with HEADER_TOO_LARGE, was retried on other sessions and answered
    // 503 "no session of agent 1 accepts requests", which no retry could ever fix.
    const before = await routedLocally();
    const res = await proxyRequest(stack, 'GET', '/api/v1/pods', { headers: { 'x-large': 'a'.repeat(AGENT_MAX_HEADER + 1000) } });
    const status = JSON.parse((await readAll(res)).toString()) as { kind: string; code: number; message: string };
    expect(res.statusCode).toBe(431);
    expect(status).toMatchObject({ kind: 'Status', code: 431 });
    expect(status.message).toContain('the request headers exceed the agent\'s limit');
    expect((await routedLocally()) - before).toBe(1);
    expect(seen).toEqual([]);
    // A request of ordinary size still goes through.
    const ok = await proxyRequest(stack, 'GET', '/api/v1/pods');
    expect(ok.statusCode).toBe(200);
    await readAll(ok);
  });

  test('a Content-Length above max_request_body_size gets 413 and the agent never sees the request', async () => {
    const { req, response } = upload('/api/v1/configmaps', { 'content-length': BODY_LIMIT + 1 });
    req.write(Buffer.alloc(1000, 1));
    const res = await response;
    const status = JSON.parse((await readAll(res)).toString()) as { kind: string; code: number; message: string };
    req.destroy();
    expect(res.statusCode).toBe(413);
    expect(status).toMatchObject({ kind: 'Status', code: 413 });
    expect(status.message).toContain('max_request_body_size');
    expect(seen).toEqual([]);
  });

  test('a chunked body growing past max_request_body_size gets 413 and the upstream request is aborted', async () => {
    const { req, response } = upload('/hold/configmaps', { 'transfer-encoding': 'chunked' });
    req.write(Buffer.alloc(BODY_LIMIT - 100, 1));
    await waitFor(() => seen[0]?.received === BODY_LIMIT - 100, 'the upstream to receive the first part of the body');
    req.write(Buffer.alloc(200, 2));
    const res = await response;
    const status = JSON.parse((await readAll(res)).toString()) as { code: number };
    req.destroy();
    expect(res.statusCode).toBe(413);
    expect(status.code).toBe(413);
    await waitFor(() => seen[0]!.aborted, 'the upstream request to be aborted');
    expect(seen[0]!.received).toBeLessThanOrEqual(BODY_LIMIT);
  });

  test('a body of exactly max_request_body_size passes, declared or chunked', async () => {
    const body = Buffer.alloc(BODY_LIMIT, 7);
    const declared = await proxyRequest(stack, 'POST', '/api/v1/configmaps', { body });
    expect(declared.statusCode).toBe(200);
    expect(JSON.parse((await readAll(declared)).toString())).toEqual({ length: BODY_LIMIT });
    const { req, response } = upload('/api/v1/configmaps', { 'transfer-encoding': 'chunked' });
    req.write(body.subarray(0, 1000));
    req.end(body.subarray(1000));
    const chunked = await response;
    expect(chunked.statusCode).toBe(200);
    expect(JSON.parse((await readAll(chunked)).toString())).toEqual({ length: BODY_LIMIT });
  });

  test('an upgrade is not a body: raw bytes beyond max_request_body_size pass after the 101', async () => {
    const url = new URL(stack.proxyUrl);
    const sock = tls.connect({ host: url.hostname, port: Number(url.port), ca: stack.proxyCa, servername: 'localhost' });
    await new Promise((r) => sock.once('secureConnect', r));
    sock.write(`POST /api/v1/namespaces/default/pods/demo/exec HTTP/1.1\r\nHost: kas\r\nAuthorization: ${stack.bearer()}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n`);
    const received: Buffer[] = [];
    sock.on('data', (c: Buffer) => received.push(c));
    await waitFor(() => Buffer.concat(received).toString().includes('\r\n\r\n'), 'the head of the 101 answer');
    expect(Buffer.concat(received).toString()).toMatch(/^HTTP\/1.1 101 /);
    sock.write(Buffer.alloc(BODY_LIMIT * 2, 3));
    await waitFor(() => upgradedBytes === BODY_LIMIT * 2, 'the upstream to receive every byte sent after the switch');
    sock.destroy();
  });
});
