/**
 * The Kubernetes API proxy end to end on loopback: client → kas (TLS) → agentk (wss) → upstream
 * (TLS), with real sockets everywhere.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { rawHeaderValues } from '../support/headers.js';
import { readAll } from '../support/streams.js';
import { waitFor } from '../support/wait.js';
import { proxyRequest, startStack, type Stack } from '../support/stack.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Seen {
  method: string;
  url: string;
  rawHeaders: string[];
  bodySha: string;
  bodyLength: number;
}

describe('Kubernetes API proxy through kas and agentk', () => {
  let upstream: FakeKubeApi;
  let stack: Stack;
  const seen: Seen[] = [];
  /** Per-test behaviour of the upstream for paths under /custom. */
  let custom: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | null = null;
  let upgradeHandler: ((req: http.IncomingMessage, socket: Duplex, head: Buffer) => void) | null = null;

  beforeAll(async () => {
    upstream = await startFakeKubeApi({
      handler: (req, res) => {
        if (custom && req.url!.startsWith('/custom')) return custom(req, res);
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks);
          seen.push({ method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, bodySha: sha(body), bodyLength: body.length });
          const url = new URL(req.url!, 'https://x');
          const size = Number(url.searchParams.get('size') ?? '-1');
          if (size >= 0) {
            // Deterministic content so the client can check it without the upstream sending it twice.
            res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size, 'X-Multi': ['a', 'b'] });
            const block = Buffer.alloc(1024 * 1024, 0x5a);
            let left = size;
            const pump = () => {
              while (left > 0) {
                const n = Math.min(left, block.length);
                left -= n;
                if (!res.write(block.subarray(0, n))) return void res.once('drain', pump);
              }
              res.end();
            };
            pump();
            return;
          }
          res.writeHead(200, { 'Content-Type': 'application/json', 'X-Echo-Method': req.method!, 'X-Multi': ['a', 'b'] });
          res.end(JSON.stringify({ sha: sha(body), length: body.length }));
        });
      },
      onUpgrade: (req, socket, head) => upgradeHandler?.(req, socket, head),
    });
    // The 100 MB upload below is above the default max_request_body_size (64 MiB).
    stack = await startStack({ upstream, kas: { agent: { kubernetes_api: { agent_wait_timeout: '1s', max_request_body_size: 128 * 1024 * 1024 } } } });
  });

  afterAll(async () => {
    await stack?.close();
    await upstream?.close();
  });

  beforeEach(() => {
    seen.length = 0;
    custom = null;
    upgradeHandler = null;
  });

  test.each(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'])('%s with bodies of 0 B to 1 MB arrives byte-exact, answer headers preserved', async (method) => {
    for (const size of [0, 1, 65_537, 1_000_000]) {
      const body = size === 0 ? null : randomBytes(size);
      const res = await proxyRequest(stack, method, '/api/v1/things?x=1', { body, headers: body ? { 'content-type': 'application/octet-stream', 'x-custom': 'kept' } : { 'x-custom': 'kept' } });
      const answer = JSON.parse((await readAll(res)).toString()) as { sha: string; length: number };
      expect(res.statusCode).toBe(200);
      expect(answer.length).toBe(size);
      if (body) expect(answer.sha).toBe(sha(body));
      expect(res.headers['x-echo-method']).toBe(method);
      expect(res.rawHeaders.filter((_, i) => i % 2 === 0 && res.rawHeaders[i] === 'X-Multi').length).toBe(2);
    }
    const last = seen.at(-1)!;
    expect(last.url).toBe('/api/v1/things?x=1');
    expect(rawHeaderValues(last.rawHeaders, 'x-custom')).toEqual(['kept']);
  });

  test('a GET with a chunked body reaches the upstream with its body', async () => {
    // Regression: kas forwarded such a request with its body and agentk dropped the body, deciding
    // "has a body" from the method instead of from the stream.
    const body = randomBytes(70_000);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = https.request(new URL('/api/v1/chunked-get', stack.proxyUrl), {
        method: 'GET',
        headers: { authorization: stack.bearer(1), 'transfer-encoding': 'chunked', 'content-type': 'application/json' },
        ca: stack.proxyCa,
        agent: false,
      }, resolve);
      req.on('error', reject);
      req.write(body.subarray(0, 1000));
      setTimeout(() => req.end(body.subarray(1000)), 20);
    });
    const answer = JSON.parse((await readAll(res)).toString()) as { sha: string; length: number };
    expect(res.statusCode).toBe(200);
    expect(answer).toEqual({ sha: sha(body), length: body.length });
    const last = seen.at(-1)!;
    expect(last.method).toBe('GET');
    expect(last.bodyLength).toBe(body.length);
  });

  test('answers without a body (HEAD, 204, 304) and small answers keep their status, headers and length', async () => {
    custom = (req, res) => {
      const status = Number(new URL(req.url!, 'https://x').searchParams.get('status') ?? '200');
      if (status === 200) {
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 5, ETag: '"v1"' });
        res.end(req.method === 'HEAD' ? undefined : 'small');
        return;
      }
      res.writeHead(status, { ETag: '"v1"' });
      res.end();
    };
    const head = await proxyRequest(stack, 'HEAD', '/custom/thing');
    expect(head.statusCode).toBe(200);
    expect(head.headers['content-length']).toBe('5');
    expect((await readAll(head)).length).toBe(0);
    for (const status of [204, 304]) {
      const res = await proxyRequest(stack, 'GET', `/custom/thing?status=${status}`);
      expect(res.statusCode).toBe(status);
      expect(res.headers.etag).toBe('"v1"');
      expect((await readAll(res)).length).toBe(0);
    }
    const small = await proxyRequest(stack, 'GET', '/custom/thing');
    expect(small.statusCode).toBe(200);
    expect(small.headers['content-length']).toBe('5');
    expect((await readAll(small)).toString()).toBe('small');
    // The connection stays usable after each of them (keep-alive framing was right).
    const again = await proxyRequest(stack, 'GET', '/api/v1/after');
    expect(again.statusCode).toBe(200);
    await readAll(again);
  });

  test('a 100 MB upload and a 100 MB download are byte-exact', async () => {
    const up = randomBytes(100 * 1024 * 1024);
    const res = await proxyRequest(stack, 'POST', '/api/v1/upload', { body: up });
    const answer = JSON.parse((await readAll(res)).toString()) as { sha: string; length: number };
    expect(answer).toEqual({ sha: sha(up), length: up.length });

    const size = 100 * 1024 * 1024;
    const down = await proxyRequest(stack, 'GET', `/api/v1/download?size=${size}`);
    const got = await readAll(down);
    expect(got.length).toBe(size);
    expect(sha(got)).toBe(sha(Buffer.alloc(size, 0x5a)));
  }, 120_000);

  test('random content in odd-sized writes comes back byte-exact on both of agentk\'s paths (a whole request and a streamed upload)', async () => {
    // agentk masks the response chunks it was handed where they lie: every byte must still arrive as sent.
    const content = randomBytes(12 * 1024 * 1024 + 5);
    custom = (req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': content.length });
        let at = 0;
        let i = 0;
        const pump = () => {
          while (at < content.length) {
            const n = Math.min(content.length - at, ((i++ * 7919) % 90_001) + 1);
            const piece = content.subarray(at, at + n);
            at += n;
            if (!res.write(piece)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      });
    };
    const whole = await readAll(await proxyRequest(stack, 'GET', '/custom/random'));
    expect(sha(whole)).toBe(sha(content));
    const streamed = await readAll(await proxyRequest(stack, 'POST', '/custom/random', { body: randomBytes(3 * 1024 * 1024) }));
    expect(sha(streamed)).toBe(sha(content));
  }, 60_000);

  test('the upstream sees the agent credentials, never the client credentials, and hop-by-hop headers are gone', async () => {
    const res = await proxyRequest(stack, 'GET', '/api/v1/namespaces?gitlab-agent-id=1&labelSelector=a', {
      headers: { cookie: '_gitlab_kas=secret', 'x-csrf-token': 'csrf', 'gitlab-agent-id': '1', 'keep-alive': 'timeout=5', te: 'trailers', 'proxy-authorization': 'Basic x' },
    });
    await readAll(res);
    const s = seen.at(-1)!;
    expect(rawHeaderValues(s.rawHeaders, 'authorization')).toEqual([`Bearer ${upstream.token}`]);
    for (const h of ['cookie', 'x-csrf-token', 'gitlab-agent-id', 'keep-alive', 'te', 'proxy-authorization']) expect(rawHeaderValues(s.rawHeaders, h)).toEqual([]);
    expect(s.url).toBe('/api/v1/namespaces?labelSelector=a');
    expect(rawHeaderValues(s.rawHeaders, 'via').join()).toContain('gitlab-agent-kas');
  });

  test('a streaming (watch) response arrives chunk by chunk while the upstream is still writing', async () => {
    let next: (() => void) | null = null;
    custom = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      let i = 0;
      next = () => {
        i++;
        if (i <= 3) res.write(`{"type":"ADDED","object":{"n":${i}}}\n`);
        else res.end();
      };
      next();
    };
    const res = await proxyRequest(stack, 'GET', '/custom/watch?watch=1');
    const events: string[] = [];
    // The upstream writes the next event only after the client has seen the previous one:
    // a proxy that buffered the response would never deliver anything and the test would time out.
    await new Promise<void>((resolve, reject) => {
      res.on('data', (c: Buffer) => {
        events.push(...c.toString().split('\n').filter(Boolean));
        next?.();
      });
      res.on('end', () => resolve());
      res.on('error', reject);
    });
    expect(events.map((e) => (JSON.parse(e) as { object: { n: number } }).object.n)).toEqual([1, 2, 3]);
  });

  test('a client that disconnects mid-response aborts the upstream request', async () => {
    let upstreamClosed: Promise<boolean> | null = null;
    custom = (_req, res) => {
      res.writeHead(200);
      res.write('first');
      upstreamClosed = new Promise((resolve) => res.on('close', () => resolve(!res.writableFinished)));
    };
    const res = await proxyRequest(stack, 'GET', '/custom/forever');
    await new Promise((r) => res.once('data', r));
    res.destroy();
    await waitFor(() => upstreamClosed !== null, 'the upstream request to start');
    await expect(upstreamClosed).resolves.toBe(true);
  });

  test('an upstream that dies mid-response ends the client response with an error, not a hang', async () => {
    custom = (req, res) => {
      res.writeHead(200, { 'Content-Length': 1000 });
      res.write('partial');
      setTimeout(() => req.socket.destroy(), 20);
    };
    const res = await proxyRequest(stack, 'GET', '/custom/dies');
    await expect(readAll(res)).rejects.toThrow();
  });

  test('bad credentials get a 401 Status and the agent is never contacted', async () => {
    for (const auth of [null, 'Bearer pat:1:wrong-token', 'Bearer pat:x:y', 'Basic Zm9vOmJhcg==', `Bearer ${stack.agentToken}`]) {
      const res = await proxyRequest(stack, 'GET', '/api/v1/secrets', { auth });
      const status = JSON.parse((await readAll(res)).toString()) as { kind: string; code: number; reason: string; message: string };
      expect(res.statusCode).toBe(401);
      expect(status).toMatchObject({ kind: 'Status', code: 401, reason: 'Unauthorized' });
      expect(res.headers['content-type']).toBe('application/json');
    }
    expect(seen).toEqual([]);
    expect(stack.kasLogs.text).not.toContain(stack.proxyToken);
    expect(stack.kasLogs.text).not.toContain('wrong-token');
  });

  test('a malformed or wrong proxy token gets a 401 Status that hints the accepted form, and kas logs why without the token', async () => {
    const cases: Array<[string, string]> = [
      ['Bearer pat-1-not-the-form-secret-abc', 'malformed'],
      ['Bearer pat:1:wrong-secret-def', 'wrong_token'],
      ['Bearer pat:77:wrong-secret-ghi', 'unknown_agent'],
    ];
    for (const [auth, reason] of cases) {
      const before = stack.kasLogs.entries.filter((e) => e.msg === 'proxy request refused: bad credentials').length;
      const res = await proxyRequest(stack, 'GET', '/api/v1/secrets', { auth });
      const status = JSON.parse((await readAll(res)).toString()) as { code: number; message: string };
      expect([auth, res.statusCode]).toEqual([auth, 401]);
      expect(res.headers['gitlab-unauthorized']).toBe('true');
      expect(status.message).toContain('Authorization: Bearer pat:<agent-id>:<token>');
      // The same answer whatever the reason: nothing tells which agents or tokens exist.
      expect(status.message).not.toMatch(/unknown|wrong|malformed/i);
      const refusals = stack.kasLogs.entries.filter((e) => e.msg === 'proxy request refused: bad credentials');
      expect(refusals.length).toBe(before + 1);
      expect(refusals.at(-1)).toMatchObject({ reason });
    }
    expect(seen).toEqual([]);
    for (const secret of ['not-the-form-secret-abc', 'wrong-secret-def', 'wrong-secret-ghi']) expect(stack.kasLogs.text).not.toContain(secret);
  });

  test('a watch on which nothing happens receives its response head while the upstream stays silent', async () => {
    // Regression: kas stored the head with writeHead and sent it only with the first body bytes, so
    // a quiet watch (client-node informers, kubectl wait) got no headers until the first event.
    let finish: (() => void) | null = null;
    custom = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Quiet': 'yes' });
      res.flushHeaders();
      finish = () => res.end();
    };
    const pending = proxyRequest(stack, 'GET', '/custom/watch?watch=true');
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([pending, new Promise<'no head'>((r) => (timer = setTimeout(() => r('no head'), 10_000)))]);
    clearTimeout(timer);
    await waitFor(() => finish !== null, 'the upstream to receive the watch');
    expect(outcome).not.toBe('no head');
    const res = outcome as http.IncomingMessage;
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-quiet']).toBe('yes');
    finish!();
    expect((await readAll(res)).length).toBe(0);
  });

  test('plain http:// to the TLS listener gets a 400 answer like the API server\'s, not a dropped connection', async () => {
    const url = new URL(stack.proxyUrl);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: Number(url.port), path: '/api/v1/pods', headers: { authorization: stack.bearer() }, agent: false }, resolve);
      req.on('error', reject);
      req.end();
    });
    expect(res.statusCode).toBe(400);
    expect((await readAll(res)).toString()).toBe('Client sent an HTTP request to an HTTPS server.\n');
    expect(seen).toEqual([]);
    // HTTPS on the same listener still works.
    const ok = await proxyRequest(stack, 'GET', '/api/v1/after-plain');
    expect(ok.statusCode).toBe(200);
    await readAll(ok);
  });

  test('an agent that is not connected gets a 502 Status after the wait', async () => {
    const res = await proxyRequest(stack, 'GET', '/api/v1/pods', { agentId: 2 });
    const status = JSON.parse((await readAll(res)).toString()) as { code: number; message: string; kind: string };
    expect(res.statusCode).toBe(502);
    expect(status.kind).toBe('Status');
    expect(status.message).toContain('agent 2 is not connected');
  }, 30_000);

  test('Connection: Upgrade switches to raw bytes both ways, and each direction closes on its own', async () => {
    upgradeHandler = (_req, socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n');
      const got: Buffer[] = [];
      socket.on('data', (c: Buffer) => {
        got.push(c);
        socket.write(Buffer.concat([Buffer.from('echo:'), c]));
      });
      socket.on('end', () => {
        // The client half-closed; this direction is still open.
        socket.end(`bye after ${Buffer.concat(got).length} bytes`);
      });
    };
    const url = new URL(stack.proxyUrl);
    const sock = tls.connect({ host: url.hostname, port: Number(url.port), ca: stack.proxyCa, servername: 'localhost' });
    await new Promise((r) => sock.once('secureConnect', r));
    sock.write(`POST /api/v1/namespaces/default/pods/demo/exec?command=sh HTTP/1.1\r\nHost: kas\r\nAuthorization: ${stack.bearer()}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`);
    const received: Buffer[] = [];
    sock.on('data', (c: Buffer) => received.push(c));
    await waitFor(() => Buffer.concat(received).toString().includes('\r\n\r\n'), 'the head of the 101 answer');
    const headText = Buffer.concat(received).toString();
    expect(headText).toMatch(/^HTTP\/1.1 101 /);
    expect(headText).toContain('X-Stream-Protocol-Version: v4.channel.k8s.io');
    sock.write('ping-1');
    await waitFor(() => Buffer.concat(received).toString().includes('echo:ping-1'), 'the echo of the first message');
    sock.end();
    await new Promise((r) => sock.once('end', r));
    expect(Buffer.concat(received).toString()).toContain('bye after 6 bytes');
    sock.destroy();
  });

  test('a client that half-closes after sending its request still receives the whole reply', async () => {
    custom = (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      // Answer late, after the client's FIN has certainly reached kas.
      req.on('end', () => setTimeout(() => res.end(`got ${Buffer.concat(chunks).length} bytes`), 200));
    };
    const url = new URL(stack.proxyUrl);
    const sock = tls.connect({ host: url.hostname, port: Number(url.port), ca: stack.proxyCa, servername: 'localhost' });
    sock.allowHalfOpen = true;
    await new Promise((r) => sock.once('secureConnect', r));
    sock.end(`POST /custom/half-close HTTP/1.1\r\nHost: kas\r\nAuthorization: ${stack.bearer()}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`);
    const received: Buffer[] = [];
    sock.on('data', (c: Buffer) => received.push(c));
    await new Promise((r) => sock.once('close', r));
    const text = Buffer.concat(received).toString();
    expect(text).toMatch(/^HTTP\/1.1 200 /);
    expect(text).toContain('got 5 bytes');
  });

  test('200 concurrent requests on one agent with one stalled reader: all others complete', async () => {
    const stalled = await proxyRequest(stack, 'GET', `/api/v1/big?size=${64 * 1024 * 1024}`);
    stalled.pause();
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const res = await proxyRequest(stack, 'GET', `/api/v1/small?size=${1000 + i}`);
        return (await readAll(res)).length;
      }),
    );
    expect(results).toEqual(Array.from({ length: 200 }, (_, i) => 1000 + i));
    stalled.destroy();
  }, 60_000);

  test('liveness, readiness and metrics on the observability listener', async () => {
    const base = `http://${stack.kas.addresses.observability}`;
    expect((await fetch(`${base}/liveness`)).status).toBe(200);
    expect((await fetch(`${base}/readiness`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('kas_connected_agents 1');
    expect(metrics).toMatch(/kas_proxy_requests_total\{status="2xx",credential="pat"\} \d+/);
  });
});

describe('agent connection lifecycle', () => {
  let upstream: FakeKubeApi;
  beforeAll(async () => {
    upstream = await startFakeKubeApi({
      handler: (req, res) => {
        if (req.url!.startsWith('/hang')) {
          res.writeHead(200);
          res.write('started');
          return;
        }
        res.end('ok');
      },
    });
  });
  afterAll(async () => upstream.close());

  test('an agent that disconnects mid-stream fails the client response at once', async () => {
    const stack = await startStack({ upstream });
    try {
      const res = await proxyRequest(stack, 'GET', '/hang');
      await new Promise((r) => res.once('data', r));
      const failed = readAll(res);
      // Kill the agent's sessions abruptly (not a drain): the client must see an error, not a hang.
      for (const c of stack.kas.registry.connections(1)) c.session.close();
      await expect(failed).rejects.toThrow();
    } finally {
      await stack.close();
    }
  });

  test('a request waiting for an agent is served as soon as the agent connects', async () => {
    const stack = await startStack({ upstream, startAgent: false });
    try {
      const pending = proxyRequest(stack, 'GET', '/ok');
      await new Promise((r) => setTimeout(r, 100));
      await stack.startAgent();
      const res = await pending;
      expect((await readAll(res)).toString()).toBe('ok');
    } finally {
      await stack.close();
    }
  });

  test('agentk keeps a pool of sessions and kas spreads requests over them', async () => {
    const stack = await startStack({ upstream, agent: { kasConnections: 3 } });
    try {
      await stack.waitForAgent(3);
      // Each session first carries agentk's own registration stream (agent_info); the spread is
      // measured once those are done, so every session starts from zero streams.
      await waitFor(() => stack.kas.registry.connections(1).every((c) => c.registration !== undefined && c.session.streamCount === 0), 'the registrations of the three sessions');
      const hangs = await Promise.all([0, 1, 2].map(() => proxyRequest(stack, 'GET', '/hang')));
      const counts = stack.kas.registry.connections(1).map((c) => c.session.streamCount);
      expect(counts.sort()).toEqual([1, 1, 1]);
      for (const h of hangs) h.destroy();
    } finally {
      await stack.close();
    }
  });

  test('kas shutdown drains: agentk is told to go away and the in-flight request still completes', async () => {
    const stack = await startStack({ upstream });
    try {
      let finish: (() => void) | null = null;
      upstream.setHandler((_req, res) => {
        res.writeHead(200);
        res.write('begin;');
        finish = () => res.end('end');
      });
      const res = await proxyRequest(stack, 'GET', '/slow');
      const body = readAll(res);
      await waitFor(() => finish !== null, 'the upstream to begin its answer');
      const shutdown = stack.kas.shutdown(10_000);
      await new Promise((r) => setTimeout(r, 100));
      finish!();
      expect((await body).toString()).toBe('begin;end');
      await shutdown;
      expect(stack.kas.registry.connectionCount).toBe(0);
    } finally {
      await stack.close();
    }
  });
});
