/**
 * agentk pointed at something that is not a kas agent endpoint (another HTTP server, a server that
 * hangs up, plain HTTP dialed with wss://, an answer that is no WebSocket handshake) says so in its
 * log line and in the connect-attempt metric, instead of a bare "socket hang up" or an HTTP status
 * blamed on kas. Real sockets on loopback; the classification's rule for an address that once had
 * a session is checked on the function itself.
 */
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadApiServerConfig } from '../kubernetes-api/api-server.js';
import { httpGet, startTestAgent } from '../testing/agent-fixture.js';
import type { Agentk } from '../app.js';
import { writeKubeconfig } from '../../../test/support/fake-kube-api.js';
import type { LogCapture } from '../../../test/support/logs.js';
import { listenLoopback } from '../../../test/support/ports.js';
import { waitFor } from '../../../test/support/wait.js';
import { classifyDialFailure } from './dial-failure.js';
import { KasRefusedError } from './kas-dialer.js';

let dir: string;
let agent: Agentk | null = null;
const servers: Array<http.Server | net.Server> = [];
const sockets = new Set<net.Socket>();
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'agentk-dial-failure-'));
});
afterEach(async () => {
  await agent?.stop();
  agent = null;
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function serve<T extends http.Server | net.Server>(server: T): Promise<number> {
  servers.push(server);
  server.on('connection', (socket: net.Socket) => sockets.add(socket));
  return listenLoopback(server);
}

/** Runs agentk against `kasAddress` until it has reported a failed attempt; returns its logs and metrics. */
async function dialWith(kasAddress: string): Promise<{ logs: LogCapture; failures: Array<Record<string, unknown>>; metrics: string }> {
  const apiServer = loadApiServerConfig({ kubeconfig: writeKubeconfig(dir, 'http://127.0.0.1:9', 'unused'), context: 'fake' });
  const started = await startTestAgent({ kasAddress, token: 'glagent-token', apiServer, kasConnections: 1 });
  agent = started.agent;
  const { logs } = started;
  const failed = () => logs.entries.filter((e) => e.kasAddress === kasAddress && e.level === 50);
  await waitFor(() => failed().length > 0, `agentk to report its failed attempt at ${kasAddress}`);
  const metrics = (await httpGet(agent.observabilityAddress, '/metrics')).body;
  return { logs, failures: failed(), metrics };
}

function expectNotKas(result: { failures: Array<Record<string, unknown>>; metrics: string; logs: LogCapture }, kasAddress: string, what: RegExp): void {
  const first = result.failures[0]!;
  expect(first.msg).toMatch(new RegExp(`^${kasAddress.replace(/[.?*+^$()[\]{}|\\/]/g, '\\$&')} is not a kas agent endpoint`));
  expect(first.msg).toMatch(what);
  expect(result.metrics).toMatch(/agentk_tunnel_connect_attempts_total\{result="not_kas_endpoint"\} [1-9]/);
  expect(first.msg).not.toBe('cannot connect to kas');
  expect(result.logs.text).not.toContain('glagent-token');
}

test.each([200, 404])('an HTTP server answering the upgrade with %i: not a kas agent endpoint, the status named', async (status) => {
  const port = await serve(http.createServer((_req, res) => res.writeHead(status, { 'Content-Type': 'text/html' }).end('<html>hello</html>')));
  const url = `ws://127.0.0.1:${port}/`;
  const result = await dialWith(url);
  expectNotKas(result, url, new RegExp(`HTTP ${status} instead of switching protocols`));
  expect(result.failures[0]!.status).toBe(status);
});

test('a server that closes the connection (a TLS port dialed with ws://): not a kas agent endpoint, with the wss:// hint', async () => {
  const port = await serve(net.createServer((socket) => socket.destroy()));
  const url = `ws://127.0.0.1:${port}/`;
  const result = await dialWith(url);
  expectNotKas(result, url, /closed the connection without answering the WebSocket upgrade \(a TLS port\? use wss:\/\//);
});

test('a plain HTTP port dialed with wss://: not a kas agent endpoint over TLS', async () => {
  const port = await serve(http.createServer((_req, res) => res.writeHead(404).end()));
  const url = `wss://127.0.0.1:${port}/`;
  const result = await dialWith(url);
  expectNotKas(result, url, /over TLS: .*use ws:\/\//);
});

test('an answer that is not HTTP: not a kas agent endpoint, not a WebSocket handshake', async () => {
  const port = await serve(net.createServer((socket) => socket.end('SSH-2.0-OpenSSH_9.2\r\n')));
  const url = `ws://127.0.0.1:${port}/`;
  const result = await dialWith(url);
  expectNotKas(result, url, /not a WebSocket handshake/);
});

describe('classifyDialFailure', () => {
  const url = new URL('wss://kas.example.com/');

  test('kas\'s own refusals keep their meaning: 401 in text is the token, 429 and 503 are refusals', () => {
    expect(classifyDialFailure(new KasRefusedError(401, 'text/plain'), url, false)).toMatchObject({ result: 'unauthorized', level: 'error' });
    expect(classifyDialFailure(new KasRefusedError(429), url, false)).toMatchObject({ result: 'refused', level: 'warn' });
    expect(classifyDialFailure(new KasRefusedError(503, 'text/plain'), url, false)).toMatchObject({ result: 'refused' });
  });

  test('a 401 with a JSON body is a Kubernetes API (kas\'s proxy listener), not the agent endpoint', () => {
    const f = classifyDialFailure(new KasRefusedError(401, 'application/json'), url, false);
    expect(f).toMatchObject({ result: 'not_kas_endpoint', level: 'error' });
    expect(f.message).toMatch(/^wss:\/\/kas\.example\.com\/ is not a kas agent endpoint: .*Kubernetes API/);
  });

  test('once the address had a session, the same answers are passing trouble, reported as before', () => {
    expect(classifyDialFailure(new KasRefusedError(404), url, true)).toMatchObject({ result: 'refused', message: 'kas answered the WebSocket upgrade with HTTP 404' });
    const hangUp = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    expect(classifyDialFailure(hangUp, url, true)).toMatchObject({ result: 'error', message: 'cannot connect to kas' });
    expect(classifyDialFailure(hangUp, url, false)).toMatchObject({ result: 'not_kas_endpoint' });
  });

  test('a refused TCP connection or a timeout says nothing about the endpoint', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    expect(classifyDialFailure(refused, url, false)).toMatchObject({ result: 'error', message: 'cannot connect to kas', fields: { code: 'ECONNREFUSED' } });
    expect(classifyDialFailure(new Error('Opening handshake has timed out'), url, false)).toMatchObject({ result: 'error' });
  });
});
