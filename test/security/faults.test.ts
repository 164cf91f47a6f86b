/**
 * Fault injection between agentk and kas: a TCP fault proxy (test/support/fault-proxy.ts) stalls,
 * half-closes, corrupts, delays or cuts the tunnel connection while requests are in flight. With a
 * ping interval of 500 ms on both sides, a silently dead connection must be found by keepalive
 * (the design says within two intervals; the bound here is generous for a loaded machine), every
 * in-flight client request must end at once (a 502 Status before the response head, a cut response
 * after it), the requests to the API server must be aborted, agentk must reconnect, and nothing may
 * be left behind (sessions, proxy connections, sockets).
 */
import type http from 'node:http';
import type { AgentConnection } from '../../src/broker/tunnel/agent-registry.js';
import { FaultProxy, type FaultSettings } from '../support/fault-proxy.js';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { readAll } from '../support/streams.js';
import { proxyRequest, startStack, type Stack } from '../support/stack.js';
import { waitFor } from '../support/wait.js';

const PING_MS = 500;
/** Generous bound on keepalive detection (the design's target is two intervals). */
const DETECT_WITHIN_MS = 6 * PING_MS;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


function socketHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TLSWrap' || r === 'TCPServerWrap').length;
}

describe('faults between agentk and kas', () => {
  let upstream: FakeKubeApi;
  let stack: Stack;
  let proxy: FaultProxy;
  /** Requests the API server is holding open, and whether each was aborted. */
  const held: Array<{ url: string; closed: boolean; res: http.ServerResponse }> = [];
  let baselineHandles = 0;

  beforeAll(async () => {
    upstream = await startFakeKubeApi({
      handler: (req, res) => {
        if (req.url!.startsWith('/hold')) {
          const entry = { url: req.url!, closed: false, res };
          held.push(entry);
          res.on('close', () => (entry.closed = true));
          // /hold-body: the head and a first chunk go out, then nothing (a watch); /hold-head: nothing at all.
          if (req.url!.startsWith('/hold-body')) {
            res.writeHead(200, { 'Content-Type': 'application/json' });
            res.write('{"type":"ADDED"}\n');
          }
          return;
        }
        req.resume();
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"kind":"Ok"}');
      },
    });
    stack = await startStack({ upstream, startAgent: false, kas: { agent: { tunnel: { ping_interval: `${PING_MS}ms` }, kubernetes_api: { agent_wait_timeout: '3s' } } } });
    proxy = await FaultProxy.start(stack.kas.addresses.agent!);
    await stack.startAgent({ kasAddress: `wss://${proxy.address}/`, kasConnections: 1, tuning: { pingIntervalMs: PING_MS } });
    await stack.waitForAgent(1);
    await ok();
    baselineHandles = socketHandles();
  });

  afterAll(async () => {
    for (const h of held) h.res.destroy();
    await stack?.close();
    await proxy?.close();
    await upstream?.close();
  });

  async function ok(): Promise<void> {
    const res = await proxyRequest(stack, 'GET', '/api/v1/namespaces');
    const body = await readAll(res);
    expect(`${res.statusCode} ${body.toString()}`).toBe('200 {"kind":"Ok"}');
  }

  function connection(): AgentConnection {
    const conns = stack.kas.registry.connections(1);
    if (conns.length !== 1) throw new Error(`expected agentk to hold exactly 1 session on kas, found ${conns.length}`);
    return conns[0]!;
  }

  /**
   * Starts a watch (head already relayed) and a request waiting for its head, applies the fault,
   * and checks that kas finds the dead connection in time, both requests end at once, the API
   * server requests are aborted, and agentk comes back.
   */
  async function survive(fault: FaultSettings | 'cut', codes: string[]): Promise<void> {
    const before = connection();
    const heldBefore = held.length;
    const watch = await proxyRequest(stack, 'GET', '/hold-body/watch');
    expect(watch.statusCode).toBe(200);
    const watchBody = readAll(watch).then(
      () => 'ended normally',
      () => 'cut',
    );
    const waiting = proxyRequest(stack, 'GET', '/hold-head/pods').then(
      async (res) => `${res.statusCode} ${(await readAll(res).catch(() => Buffer.from('(cut)'))).toString()}`,
      (err: Error) => `failed: ${err.message}`,
    );
    await waitFor(() => held.length === heldBefore + 2, 'both requests to reach the API server', 10_000);
    const closed = new Promise<number>((resolve) => before.session.once('close', () => resolve(Date.now())));
    const t0 = Date.now();
    if (fault === 'cut') proxy.cut();
    else proxy.fault(fault);
    const closedAt = await Promise.race([closed, sleep(DETECT_WITHIN_MS * 3).then(() => null)]);
    if (closedAt === null) throw new Error(`kas did not notice the ${JSON.stringify(fault)} connection within ${DETECT_WITHIN_MS * 3} ms`);
    const detectMs = closedAt - t0;
    expect({ detectMs, withinBound: detectMs <= DETECT_WITHIN_MS }).toEqual({ detectMs, withinBound: true });
    expect(codes).toContain(before.session.closeError?.code ?? 'clean close');
    // In-flight requests end at once: the watch is cut, the waiting one gets a Status (or is cut).
    const settle = Promise.all([watchBody, waiting]);
    const outcome = await Promise.race([settle, sleep(3000).then(() => null)]);
    if (outcome === null) throw new Error(`a client request still hung 3 s after kas lost the agent connection (${JSON.stringify(fault)})`);
    const [w, h] = outcome;
    expect(w).toBe('cut');
    expect(h).toMatch(/^(502 \{"kind":"Status".*"code":502\}|failed: .*)$/s);
    // The requests in the cluster were aborted, not left running.
    await waitFor(() => held.slice(heldBefore).every((x) => x.closed), 'agentk to abort the requests to the API server', 10_000);
    // agentk reconnects (through the proxy: new connections pass) and serves again.
    await waitFor(() => stack.kas.registry.connections(1).some((c) => c.connectionId !== before.connectionId), 'agentk to reconnect', 15_000);
    await ok();
    proxy.fault({ mode: 'pass' });
  }

  test('stall (a NAT that forgot the flow): keepalive finds it, requests fail fast, agentk reconnects', async () => {
    await survive({ mode: 'stall' }, ['KEEPALIVE_TIMEOUT']);
  });

  test('half-open, nothing reaches kas: kas finds it by keepalive', async () => {
    await survive({ mode: 'half-open', drop: 'to-server' }, ['KEEPALIVE_TIMEOUT']);
  });

  test('half-open, nothing reaches agentk: found by keepalive on either side', async () => {
    await survive({ mode: 'half-open', drop: 'to-client' }, ['KEEPALIVE_TIMEOUT']);
  });

  test('corrupted bytes: the connection is dropped at once (TLS refuses them), agentk reconnects', async () => {
    await survive({ mode: 'corrupt' }, ['CONNECTION_LOST', 'KEEPALIVE_TIMEOUT', 'MALFORMED_FRAME']);
  });

  test('cut (both sockets reset): in-flight requests fail at once, agentk reconnects', async () => {
    await survive('cut', ['CONNECTION_LOST']);
  });

  test('a delay of 150 ms each way (300 ms round trip, below the ping interval): no false keepalive timeout, requests succeed', async () => {
    const before = connection();
    proxy.fault({ mode: 'delay', delayMs: 150 });
    for (let i = 0; i < 5; i++) await ok();
    await sleep(4 * PING_MS);
    expect(before.session.state).toBe('open');
    expect(connection().connectionId).toBe(before.connectionId);
    proxy.fault({ mode: 'pass' });
  });

  test('afterwards nothing is left behind: one session, one proxied connection, sockets back to baseline', async () => {
    await waitFor(() => proxy.connections === 1, `the fault proxy to hold only agentk's live connection (it holds ${proxy.connections})`, 15_000);
    expect(stack.kas.registry.connectionCount).toBe(1);
    expect(stack.agent!.liveSessions).toBe(1);
    expect(held.every((h) => h.closed)).toBe(true);
    await waitFor(() => socketHandles() <= baselineHandles + 4, `socket handles to return to the baseline (${baselineHandles}; now ${socketHandles()})`, 15_000);
    await ok();
  });
});
