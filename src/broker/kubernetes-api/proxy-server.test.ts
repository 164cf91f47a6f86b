/**
 * The proxy server alone, with stand-ins for what it is composed with (authenticator, router): for
 * what an end-to-end stack cannot provoke on cue, such as a bug that throws, or a client leaving at
 * the moment routing finishes.
 */
import http from 'node:http';
import net from 'node:net';
import { Registry } from 'prom-client';
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import type { TunnelError } from '../../protocol/errors.js';
import type { TunnelStream } from '../../protocol/stream.js';
import { createLogger } from '../../shared/logger.js';
import { errorOf, readAll } from '../../../test/support/streams.js';
import { waitFor } from '../../../test/support/wait.js';
import type { ProxyAuthenticator } from '../auth/types.js';
import type { AgentRouter, OpenOptions, OpenedStream } from '../routing/agent-router.js';
import type { KubernetesApiConfig } from './config.js';
import { ProxyMetrics } from './metrics.js';
import { KubernetesApiProxyServer } from './proxy-server.js';

const config: KubernetesApiConfig = {
  listen: { address: '127.0.0.1:0', headers_timeout: 30_000 },
  url_path_prefix: '/',
  agent_wait_timeout: 10_000,
  max_request_body_size: 64 * 1024 * 1024,
};

const allowAgentOne: ProxyAuthenticator = {
  credentialForms: 'test',
  authorize: () => Promise.resolve({ ok: true, decision: { agentId: 1, impersonate: null, credential: 'pat' } }),
};

async function startProxy(authenticator: ProxyAuthenticator, router: Partial<AgentRouter>): Promise<{ proxy: KubernetesApiProxyServer; registry: Registry; port: number }> {
  const registry = new Registry();
  const proxy = new KubernetesApiProxyServer({ config, tls: null, corsOrigin: null, authenticator, router: router as AgentRouter, metrics: new ProxyMetrics(registry), logger: createLogger({ name: 'kas', level: 'silent' }) });
  const address = await proxy.start();
  return { proxy, registry, port: Number(address.slice(address.lastIndexOf(':') + 1)) };
}

function get(port: number): { req: http.ClientRequest; response: Promise<http.IncomingMessage> } {
  let req!: http.ClientRequest;
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    req = http.get({ host: '127.0.0.1', port, path: '/api/v1/pods', agent: false }, resolve);
    req.on('error', reject);
  });
  return { req, response };
}

/** Sends a raw upgrade request and returns everything the server wrote before closing. */
function rawUpgrade(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write('GET /api/v1/namespaces/x/pods/y/exec HTTP/1.1\r\nHost: kas\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n'));
    const got: Buffer[] = [];
    sock.on('data', (c: Buffer) => got.push(c));
    sock.on('error', reject);
    sock.on('close', () => resolve(Buffer.concat(got).toString()));
  });
}

describe('Kubernetes API proxy server', () => {
  test('an exception while handling a request answers a 500 Status and is counted, for plain requests and upgrades', async () => {
    // Regression: the request wrapper only logged the exception and the client waited forever.
    const throwing: ProxyAuthenticator = {
      credentialForms: 'test',
      authorize: () => Promise.reject(new Error('a bug in an authenticator')),
    };
    const { proxy, registry, port } = await startProxy(throwing, {});
    try {
      const res = await get(port).response;
      const status = JSON.parse((await readAll(res)).toString()) as { kind: string; code: number };
      expect(res.statusCode).toBe(500);
      expect(status).toMatchObject({ kind: 'Status', code: 500 });
      const upgrade = await rawUpgrade(port);
      expect(upgrade).toMatch(/^HTTP\/1.1 500 /);
      expect(upgrade).toContain('"kind":"Status"');
      const metrics = await registry.getSingleMetricAsString('kas_proxy_unexpected_errors_total');
      expect(metrics).toContain('kas_proxy_unexpected_errors_total{kind="request"} 1');
      expect(metrics).toContain('kas_proxy_unexpected_errors_total{kind="upgrade"} 1');
    } finally {
      await proxy.stop();
    }
  });

  test('a client that leaves while its stream is being opened leaves no stream open at the agent', async () => {
    // Regression: the proxy answered 499 without resetting the stream routing had just opened, and
    // the agent's upstream request (a watch) stayed open until the session ended.
    const [a, b] = createMemoryTransportPair();
    const agent = new Session(b, { role: 'server' });
    const kasSide = new Session(a, { role: 'client' });
    await Promise.all([agent.ready, kasSide.ready]);
    const atAgent: Array<Promise<TunnelError>> = [];
    agent.on('stream', (s: TunnelStream) => atAgent.push(errorOf(s)));
    let cancel: OpenOptions['cancel'] | null = null;
    let release: (() => void) | null = null;
    const router: Partial<AgentRouter> = {
      // A router whose open completes just as the client leaves: the stream exists, the client is gone.
      open: (_agentId: number, head, o: OpenOptions) =>
        new Promise<OpenedStream | null>((resolve) => {
          cancel = o.cancel;
          release = () => resolve({ stream: kasSide.openStream(head, { end: o.end }), via: kasSide });
        }),
    };
    const { proxy, port } = await startProxy(allowAgentOne, router);
    try {
      const { req, response } = get(port);
      response.catch(() => undefined);
      await waitFor(() => release !== null, 'the proxy to ask the router for a stream');
      // A reset, not a FIN: a FIN before the answer is a half-close, and the client still gets its reply.
      req.socket!.resetAndDestroy();
      await waitFor(() => cancel!.aborted, 'the proxy to notice that the client left');
      release!();
      await waitFor(() => atAgent.length === 1, 'the stream to reach the agent');
      expect((await atAgent[0]!).code).toBe('CANCELLED');
      await waitFor(() => agent.streamCount === 0 && kasSide.streamCount === 0, 'no stream left open on either side');
    } finally {
      await proxy.stop();
      kasSide.close();
      agent.close();
    }
  });
});
