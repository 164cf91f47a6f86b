/**
 * Attack cases against both internet-facing listeners of a real kas (agent listener and Kubernetes
 * API proxy, TLS, standalone mode) with a real agentk behind it. Requests are written by hand on raw
 * TLS sockets, so nothing normalises them on the way. Each attack must be refused with the right
 * status, reach nothing but the agent's own API server (and then only with a legitimate path and
 * Host), and leave no token in a response or a log line. Covered elsewhere, not repeated here: bad
 * proxy credentials (test/integration/proxy.test.ts), JWT attacks and client Impersonate-* headers
 * under each access_as (test/integration/gitlab-mode.test.ts, src/agent/agentk-proxy.test.ts).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { startStack, type Stack } from '../support/stack.js';

const HEADERS_TIMEOUT_MS = 1000;
const HUGE_TOKEN = `glagent-${'A'.repeat(10 * 1024)}`;

interface RawAnswer {
  /** The status code, or 0 when the server closed without answering. */
  status: number;
  text: string;
  /** ms from the first byte sent to the close. */
  closedAfterMs: number;
}

/** Sends raw bytes over TLS and reads until the server closes (or 5 s pass). */
function raw(address: string, ca: string, request: string | Buffer, options: { trickle?: { header: string; everyMs: number }; untilHead?: boolean } = {}): Promise<RawAnswer> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, ca, servername: host === '127.0.0.1' ? undefined : host });
    const chunks: Buffer[] = [];
    let start = 0;
    let timer: NodeJS.Timeout | null = null;
    const deadline = setTimeout(() => socket.destroy(), 8000);
    socket.on('secureConnect', () => {
      start = Date.now();
      socket.write(request);
      if (options.trickle) {
        const t = options.trickle;
        timer = setInterval(() => {
          if (!socket.destroyed) socket.write(t.header);
        }, t.everyMs);
      }
    });
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (options.untilHead && Buffer.concat(chunks).includes('\r\n\r\n')) socket.destroy();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(deadline);
      if (timer) clearInterval(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : 0, text, closedAfterMs: Date.now() - start });
    });
    socket.on('timeout', () => reject(new Error('timeout')));
  });
}

describe('attacks on kas\'s listeners', () => {
  let upstream: FakeKubeApi;
  let stack: Stack;
  let evil: http.Server;
  let evilAddress: string;
  const upstreamSeen: Array<{ method: string; url: string; host: string; contentLength: string | null }> = [];
  const evilSeen: string[] = [];

  beforeAll(async () => {
    upstream = await startFakeKubeApi({
      handler: (req, res) => {
        upstreamSeen.push({ method: req.method!, url: req.url!, host: req.headers.host ?? '', contentLength: req.headers['content-length'] ?? null });
        req.resume();
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"kind":"Ok"}');
      },
    });
    evil = http.createServer((req, res) => {
      evilSeen.push(`${req.method} ${req.url}`);
      res.end();
    });
    evil.on('connection', () => evilSeen.push('connection'));
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    evilAddress = `127.0.0.1:${(evil.address() as AddressInfo).port}`;
    stack = await startStack({
      upstream,
      kas: {
        agent: {
          listen: { headers_timeout: `${HEADERS_TIMEOUT_MS}ms` },
          kubernetes_api: { listen: { headers_timeout: `${HEADERS_TIMEOUT_MS}ms` }, agent_wait_timeout: '1s' },
        },
      },
    });
    await stack.waitForAgent(2);
  });

  afterAll(async () => {
    await stack?.close();
    await upstream?.close();
    evil?.closeAllConnections();
    await new Promise<void>((r) => (evil ? evil.close(() => r()) : r()));
  });

  beforeEach(() => {
    upstreamSeen.length = 0;
  });

  const agentAddr = () => stack.kas.addresses.agent!;
  const proxyAddr = () => stack.kas.addresses.kubernetes_api!;
  const upgrade = (headers: string, target = '/') =>
    `GET ${target} HTTP/1.1\r\nHost: kas\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${headers}\r\n`;
  const get = (target: string, headers: string) => `GET ${target} HTTP/1.1\r\nHost: kas\r\nConnection: close\r\n${headers}\r\n`;

  function noSecretsLeaked(texts: string[]): void {
    for (const secret of [stack.agentToken, stack.proxyToken, 'glagent-never-connects', HUGE_TOKEN.slice(0, 200)]) {
      for (const t of [...texts, stack.kasLogs.text, stack.agentLogs.text]) expect(t.includes(secret) ? `a token appears in: ${t.slice(0, 200)}` : 'no token').toBe('no token');
    }
  }

  describe('the agent listener (WebSocket upgrade with the agent token)', () => {
    test.each([
      ['no Authorization header', ''],
      ['an empty bearer token', 'Authorization: Bearer \r\n'],
      ['an empty Authorization header', 'Authorization: \r\n'],
      ['a 10 KB token', `Authorization: Bearer ${HUGE_TOKEN}\r\n`],
      ['a token with a tab inside', 'Authorization: Bearer glagent-test\tagent-token-0123456789\r\n'],
      ['the proxy token', 'Authorization: Bearer proxy-test-token-9876543210\r\n'],
      ['a proxy credential naming agent 1', 'Authorization: Bearer pat:1:proxy-test-token-9876543210\r\n'],
      ['the agent token twice', 'Authorization: Bearer glagent-test-agent-token-0123456789\r\nAuthorization: Bearer glagent-test-agent-token-0123456789\r\n'],
      ['the agent token and another one', 'Authorization: Bearer glagent-test-agent-token-0123456789\r\nAuthorization: Bearer glagent-never-connects\r\n'],
      ['the token as Basic credentials', `Authorization: Basic ${Buffer.from('x:glagent-test-agent-token-0123456789').toString('base64')}\r\n`],
    ])('%s: 401, no WebSocket', async (_name, headers) => {
      const before = stack.kas.registry.connectionCount;
      const answer = await raw(agentAddr(), stack.proxyCa, upgrade(headers));
      expect(answer.status).toBe(401);
      expect(answer.text).not.toContain('101 Switching');
      expect(stack.kas.registry.connectionCount).toBe(before);
      noSecretsLeaked([answer.text]);
    });

    test('the token in the query string instead of the header: 401', async () => {
      const answer = await raw(agentAddr(), stack.proxyCa, upgrade('', `/?access_token=${stack.agentToken}&token=${stack.agentToken}`));
      expect(answer.status).toBe(401);
      noSecretsLeaked([answer.text]);
    });

    test('control characters in the token are refused by the HTTP parser: 400', async () => {
      const answer = await raw(agentAddr(), stack.proxyCa, upgrade('Authorization: Bearer glagent-test\x01agent-token\x7f\r\n'));
      expect(answer.status).toBe(400);
    });

    test('request headers beyond 16 KB: 431 before anything else is looked at', async () => {
      const answer = await raw(agentAddr(), stack.proxyCa, upgrade(`Authorization: Bearer ${stack.agentToken}\r\nX-Pad: ${'p'.repeat(20 * 1024)}\r\n`));
      expect(answer.status).toBe(431);
      noSecretsLeaked([answer.text]);
    });

    test('a slow head (one header line every 200 ms, never finished) is cut by agent.listen.headers_timeout', async () => {
      const answer = await raw(agentAddr(), stack.proxyCa, 'GET / HTTP/1.1\r\nHost: kas\r\n', { trickle: { header: 'X-Slow: 1\r\n', everyMs: 200 } });
      expect(answer.status === 408 || answer.status === 0).toBe(true);
      // Generous: the timeout plus Node's check interval, on a loaded machine.
      expect(answer.closedAfterMs).toBeLessThan(HEADERS_TIMEOUT_MS * 5);
    });

    test('a plain request (no upgrade) gets 426 and reveals nothing', async () => {
      const answer = await raw(agentAddr(), stack.proxyCa, get('/', `Authorization: Bearer ${stack.agentToken}\r\n`), { untilHead: true });
      expect(answer.status).toBe(426);
      noSecretsLeaked([answer.text]);
    });
  });

  describe('the Kubernetes API proxy listener', () => {
    const auth = () => `Authorization: ${stack.bearer(1)}\r\n`;

    test.each([
      ['an empty bearer token', 'Authorization: Bearer \r\n'],
      ['a 10 KB token', `Authorization: Bearer pat:1:${HUGE_TOKEN}\r\n`],
      ['a token with a tab inside', 'Authorization: Bearer pat:1:proxy-test\ttoken-9876543210\r\n'],
      ['the proxy token for an agent it may not reach', 'Authorization: Bearer pat:3:proxy-test-token-9876543210\r\n'],
      ['the proxy token without an agent id', 'Authorization: Bearer proxy-test-token-9876543210\r\n'],
      ['a valid credential twice', 'Authorization: Bearer pat:1:proxy-test-token-9876543210\r\nAuthorization: Bearer pat:1:proxy-test-token-9876543210\r\n'],
      ['a valid credential and a bad one', 'Authorization: Bearer pat:1:wrong\r\nAuthorization: Bearer pat:1:proxy-test-token-9876543210\r\n'],
    ])('%s: 401 Status, nothing reaches the cluster', async (_name, headers) => {
      const answer = await raw(proxyAddr(), stack.proxyCa, get('/api/v1/secrets', headers));
      expect(answer.status).toBe(401);
      expect(answer.text).toContain('"kind":"Status"');
      expect(upstreamSeen).toEqual([]);
      noSecretsLeaked([answer.text]);
    });

    test('credentials in the query string are not accepted: 401, and they are not forwarded', async () => {
      for (const q of [`access_token=pat:1:${stack.proxyToken}`, `token=pat:1:${stack.proxyToken}`, `gitlab-agent-id=1&gitlab-csrf-token=${stack.proxyToken}`]) {
        const answer = await raw(proxyAddr(), stack.proxyCa, get(`/api/v1/pods?${q}`, ''));
        expect(answer.status).toBe(401);
      }
      expect(upstreamSeen).toEqual([]);
    });

    test('control characters in a header are refused by the HTTP parser: 400', async () => {
      const answer = await raw(proxyAddr(), stack.proxyCa, get('/api/v1/pods', `${auth()}X-Bad: a\x01b\r\n`));
      expect(answer.status).toBe(400);
      expect(upstreamSeen).toEqual([]);
    });

    test('path tricks never reach anything but the API server, and never with a dot segment', async () => {
      const cases: Array<[string, number[]]> = [
        ['/api/../../../etc/passwd', [400]],
        ['/api/%2e%2e/%2e%2e/secret', [400]],
        ['/api/%2E%2E%2fsecret', [200]],
        ['/api/v1/namespaces/a%2fb/pods', [200]],
        ['/./api', [400]],
        [`http://${evilAddress}/evil`, [404]],
        [`//${evilAddress}/evil`, [404]],
        ['*', [404]],
        ['/api/v1/pods#frag', [200, 400]],
      ];
      for (const [target, statuses] of cases) {
        const answer = await raw(proxyAddr(), stack.proxyCa, get(target, auth()));
        expect({ target, status: answer.status, ok: statuses.includes(answer.status) }).toEqual({ target, status: answer.status, ok: true });
      }
      const host = new URL(upstream.url).host;
      for (const s of upstreamSeen) {
        expect(s.host).toBe(host);
        expect(s.url).toMatch(/^\/(?!\/)/);
        expect(s.url).not.toMatch(/(^|\/)(\.|%2e){1,2}(\/|\?|$)/i);
      }
      expect(evilSeen).toEqual([]);
    });

    test('CONNECT to another host is refused and reaches nothing', async () => {
      const answer = await raw(proxyAddr(), stack.proxyCa, `CONNECT ${evilAddress} HTTP/1.1\r\nHost: ${evilAddress}\r\n${auth()}\r\n`);
      expect([0, 400, 404, 405]).toContain(answer.status);
      expect(evilSeen).toEqual([]);
      expect(upstreamSeen).toEqual([]);
    });

    test('a Host (and X-Forwarded-Host) pointing elsewhere changes nothing: the API server gets its own Host', async () => {
      const answer = await raw(proxyAddr(), stack.proxyCa, `GET /api/v1/pods HTTP/1.1\r\nHost: ${evilAddress}\r\nX-Forwarded-Host: ${evilAddress}\r\nConnection: close\r\n${auth()}\r\n`);
      expect(answer.status).toBe(200);
      expect(upstreamSeen.map((s) => s.host)).toEqual([new URL(upstream.url).host]);
      expect(evilSeen).toEqual([]);
    });

    test('request headers beyond 16 KB: 431, nothing reaches the cluster', async () => {
      const answer = await raw(proxyAddr(), stack.proxyCa, get('/api/v1/pods', `${auth()}X-Pad: ${'p'.repeat(20 * 1024)}\r\n`));
      expect(answer.status).toBe(431);
      expect(upstreamSeen).toEqual([]);
    });

    test('bytes after a request\'s Content-Length are never taken for a second request', async () => {
      const smuggled = get('/api/v1/smuggled', auth());
      const answer = await raw(proxyAddr(), stack.proxyCa, `POST /api/v1/pods HTTP/1.1\r\nHost: kas\r\nConnection: close\r\nContent-Length: 5\r\n${auth()}\r\nhello${smuggled}`);
      // Node refuses bytes after a Connection: close request (400) or serves the first request only.
      expect([200, 400]).toContain(answer.status);
      expect(upstreamSeen.map((s) => s.url)).not.toContain('/api/v1/smuggled');
    });

    test('Content-Length together with Transfer-Encoding (request smuggling): 400, and Content-Length is never forwarded', async () => {
      const answer = await raw(proxyAddr(), stack.proxyCa, `POST /api/v1/te-and-cl HTTP/1.1\r\nHost: kas\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n${auth()}\r\n0\r\n\r\n`);
      expect(answer.status).toBe(400);
      // Node may hand kas the request before it refuses the connection; what goes on is framed one way only.
      await new Promise((r) => setTimeout(r, 200));
      for (const s of upstreamSeen.filter((x) => x.url.includes('te-and-cl'))) expect(s.contentLength).toBeNull();
      expect(upstreamSeen.filter((x) => !x.url.includes('te-and-cl') && x.url !== '/api/v1/pods')).toEqual([]);
    });

    test('a slow head is cut by agent.kubernetes_api.listen.headers_timeout', async () => {
      const answer = await raw(proxyAddr(), stack.proxyCa, 'GET /api/v1/pods HTTP/1.1\r\nHost: kas\r\n', { trickle: { header: 'X-Slow: 1\r\n', everyMs: 200 } });
      expect(answer.status === 408 || answer.status === 0).toBe(true);
      expect(answer.closedAfterMs).toBeLessThan(HEADERS_TIMEOUT_MS * 5);
      expect(upstreamSeen).toEqual([]);
    });
  });

  test('after all of it, the agent still serves and no log line carries a token', async () => {
    const answer = await raw(proxyAddr(), stack.proxyCa, get('/api/v1/namespaces', `Authorization: ${stack.bearer(1)}\r\n`));
    expect(answer.status).toBe(200);
    noSecretsLeaked([]);
  });
});
