/**
 * The fuzz harness: real kas and real agentk on loopback, fed hostile input over real WebSockets.
 *
 * - `kas-raw`: a client connects to kas's agent listener with a valid agent token (agent 2) and sends
 *   random and mutated frames, random handshakes, msgpack bombs.
 * - `kas-reply`: a client completes the handshake as agent 2, a proxy request is sent to agent 2, and
 *   the client answers kas's OPEN with hostile REPLY/DATA/RESET frames, then disconnects.
 * - `agentk-raw`: a fake kas accepts a real agentk's connection and sends it the same hostile frames.
 * - `agentk-open`: a fake kas (a protocol server Session) opens streams on agentk with hostile HTTP
 *   request heads (traversal, absolute URLs, CONNECT, Host elsewhere, bad types) and checks every
 *   stream is answered or reset, and that agentk talks to nothing but its API server.
 *
 * Between cases, agent 1 (a real agentk on the same kas) must keep serving requests. Every case must
 * end with a coded close (1000 or 4000-4020) or a stream answer/reset; the process must not see an
 * uncaught exception or unhandled rejection. Used by fuzz.test.ts (short) and bench/fuzz.ts (long).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { startAgentk, type Agentk } from '../../src/agent/app.js';
import { FrameKind, decodeFrame, encodeFrame, type Frame, type Head, type WireValue } from '../../src/protocol/frames.js';
import { decodeResponseHead, encodeRequestHead } from '../../src/protocol/http.js';
import { Session } from '../../src/protocol/session.js';
import type { TunnelStream } from '../../src/protocol/stream.js';
import { createLogger } from '../../src/shared/logger.js';
import { WsTransport } from '../../src/shared/ws-transport.js';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { readAll } from '../support/streams.js';
import { LogCapture } from '../support/logs.js';
import { waitFor } from '../support/wait.js';
import { proxyRequest, startStack, type Stack } from '../support/stack.js';
import { hexSummary, openCase, rawCase, replyCase, sampleOne, validHello, type OpenCase, type RawCase, type ReplyCase } from './fuzz-inputs.js';

export type FuzzTargetName = 'kas-raw' | 'kas-reply' | 'agentk-raw' | 'agentk-open';
export const FUZZ_TARGETS: FuzzTargetName[] = ['kas-raw', 'kas-reply', 'agentk-raw', 'agentk-open'];

export interface FuzzFailure {
  target: FuzzTargetName | 'process' | 'health' | 'memory';
  seed: number | null;
  what: string;
  input: string;
}

export interface FuzzReport {
  cases: number;
  byTarget: Record<string, number>;
  /** How cases ended: close codes seen, stream outcomes. */
  outcomes: Record<string, number>;
  healthChecks: number;
  failures: FuzzFailure[];
  heapStartMb: number;
  heapEndMb: number;
  durationMs: number;
  seed: number;
}

export interface FuzzOptions {
  durationMs: number;
  maxCases: number;
  /** First seed; case i uses seed + i. */
  seed: number;
  targets?: FuzzTargetName[];
  /** A health request through agent 1 every this many cases. */
  healthEvery?: number;
  log?: (line: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Heap in use, MB, after a full collection when the process runs with --expose-gc (npm run fuzz does). */
function heapMb(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}
const KAS_FRAME_LIMIT = 256 * 1024;
const AGENTK_FRAME_LIMIT = 256 * 1024;
/** How long a case waits, after its last message, for the receiver to close on its own. */
const SETTLE_MS = 150;

/** A close code that says why: clean, or a tunnel error code. 1005 is a close frame without a code. */
function codedClose(code: number, oversizedSent: boolean): boolean {
  return code === 1000 || code === 1005 || (code >= 4000 && code <= 4020) || (oversizedSent && code === 1009);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]).finally(() => clearTimeout(timer));
}

/** Replaces the placeholder host "evil.example" in every string of a head by a live address. */
function withEvil(v: WireValue, evil: string): WireValue {
  if (typeof v === 'string') return v.replaceAll('evil.example', evil);
  if (Array.isArray(v)) return v.map((x) => withEvil(x, evil));
  if (v && typeof v === 'object' && !(v instanceof Uint8Array)) {
    const out: Record<string, WireValue> = {};
    for (const [k, x] of Object.entries(v)) out[k] = withEvil(x, evil);
    return out;
  }
  return v;
}

function openingFrame(c: RawCase, kind: typeof FrameKind.HELLO | typeof FrameKind.WELCOME): Uint8Array | null {
  if (c.opening.kind === 'none') return null;
  const body = c.opening.kind === 'valid' ? (kind === FrameKind.HELLO ? validHello() : { ...validHello(), connectionId: 'fuzz', agentId: 1 }) : c.opening.body;
  return encodeFrame({ kind, body } as Frame);
}

/** Sends a raw case on an open WebSocket and waits for the peer to close it (or closes it itself). */
async function playRaw(ws: WebSocket, c: RawCase, opening: Uint8Array | null, frameLimit: number): Promise<{ code: number; closedByPeer: boolean; oversizedSent: boolean }> {
  // The WebSocket layer may refuse a message above the frame limit itself (1009) before the session sees it.
  const oversizedSent = c.oversized || c.messages.some((m) => m.byteLength > frameLimit);
  const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
  let closedByPeer = true;
  const send = (m: Uint8Array) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(m, { binary: true });
  };
  if (opening) send(opening);
  for (const m of c.messages) send(m);
  if (c.oversized) send(Buffer.alloc(frameLimit + 1 + 128 * 1024, 0x91));
  const early = await Promise.race([closed, sleep(SETTLE_MS).then(() => null)]);
  if (early !== null) return { code: early, closedByPeer, oversizedSent };
  closedByPeer = false;
  ws.close(1000);
  const code = await withTimeout(closed, 5000, 'the peer to answer a close');
  return { code, closedByPeer, oversizedSent };
}

// ---- kas ------------------------------------------------------------------------------------

export class KasFuzzTarget {
  readonly stack: Stack;
  readonly upstream: FakeKubeApi;
  readonly agent2Token = 'glagent-never-connects';
  private readonly caPem: string;

  private constructor(stack: Stack, upstream: FakeKubeApi) {
    this.stack = stack;
    this.upstream = upstream;
    this.caPem = stack.proxyCa;
  }

  static async start(): Promise<KasFuzzTarget> {
    const upstream = await startFakeKubeApi({
      handler: (req, res) => {
        req.resume();
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"ok":true}');
      },
      record: false,
    });
    const stack = await startStack({
      upstream,
      kas: { agent: { kubernetes_api: { agent_wait_timeout: '2s' }, tunnel: { max_frame_size: KAS_FRAME_LIMIT, max_streams: 16, max_header_size: 16 * 1024 } } },
    });
    return new KasFuzzTarget(stack, upstream);
  }

  private connect(): Promise<WebSocket> {
    const ws = new WebSocket(`wss://${this.stack.kas.addresses.agent}/`, {
      headers: { Authorization: `Bearer ${this.agent2Token}` },
      ca: this.caPem,
      perMessageDeflate: false,
      maxPayload: 8 * 1024 * 1024,
    });
    ws.on('error', () => undefined);
    return withTimeout(
      new Promise<WebSocket>((resolve, reject) => {
        ws.once('open', () => resolve(ws));
        ws.once('close', (code: number) => reject(new Error(`kas closed the agent connection before it opened (${code})`)));
      }),
      5000,
      'the agent WebSocket to open',
    );
  }

  async rawCase(c: RawCase, outcomes: Record<string, number>): Promise<string | null> {
    const ws = await this.connect();
    const { code, closedByPeer, oversizedSent } = await playRaw(ws, c, openingFrame(c, FrameKind.HELLO), KAS_FRAME_LIMIT);
    outcomes[`kas close ${closedByPeer ? code : 'by fuzzer'}`] = (outcomes[`kas close ${closedByPeer ? code : 'by fuzzer'}`] ?? 0) + 1;
    if (closedByPeer && !codedClose(code, oversizedSent)) return `kas closed the connection with code ${code}, which is neither 1000 nor a tunnel error code`;
    return null;
  }

  async replyCase(c: ReplyCase, outcomes: Record<string, number>): Promise<string | null> {
    const ws = await this.connect();
    const frames: Frame[] = [];
    let wake: (() => void) | null = null;
    ws.on('message', (data: Buffer) => {
      try {
        const f = decodeFrame(data);
        if (f.kind === FrameKind.PING) ws.send(encodeFrame({ kind: FrameKind.PONG, nonce: f.nonce }));
        frames.push(f);
      } catch {
        frames.push({ kind: FrameKind.PING, nonce: -1 });
      }
      wake?.();
    });
    const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
    const next = async (pred: (f: Frame) => boolean, what: string): Promise<Frame> => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const i = frames.findIndex(pred);
        if (i >= 0) return frames.splice(i, 1)[0]!;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} from kas`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
    };
    ws.send(encodeFrame({ kind: FrameKind.HELLO, body: validHello() }));
    const welcome = await next((f) => f.kind === FrameKind.WELCOME, 'WELCOME');
    const connectionId = (welcome as { body: Head }).body.connectionId;
    // Only this session of agent 2 may be registered, so the request comes here.
    const registry = this.stack.kas.registry;
    const onlyThisSession = () => registry.connections(2).length === 1 && registry.connections(2)[0]!.connectionId === connectionId;
    const registered = await waitFor(onlyThisSession, 'this session alone', 5000, { intervalMs: 5 }).then(() => true, () => false);
    if (!registered) return 'an earlier fuzz session of agent 2 stayed registered for 5 s after it closed';
    const response = proxyRequest(this.stack, 'GET', '/api/v1/fuzz', { agentId: 2 }).then(
      async (res) => {
        try {
          await readAll(res);
          return `status ${res.statusCode}`;
        } catch {
          return `status ${res.statusCode}, body cut`;
        }
      },
      () => 'request failed',
    );
    const open = (await next((f) => f.kind === FrameKind.OPEN, 'the OPEN of the proxied request')) as Extract<Frame, { kind: 3 }>;
    const send = (m: Uint8Array) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(m);
    };
    send(encodeFrame({ kind: FrameKind.REPLY, id: open.id, head: c.head, data: c.data, fin: c.fin }));
    for (const a of c.after) {
      if (a.kind === 'data') send(encodeFrame({ kind: FrameKind.DATA, id: open.id, data: a.data, fin: a.fin }));
      else if (a.kind === 'reply') send(encodeFrame({ kind: FrameKind.REPLY, id: open.id, head: a.head, data: null, fin: false }));
      else if (a.kind === 'reset') send(encodeFrame({ kind: FrameKind.RESET, id: open.id, code: a.code, message: 'fuzz' }));
      else send(a.message);
    }
    const early = await Promise.race([response, sleep(SETTLE_MS).then(() => null)]);
    if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    const code = await withTimeout(closed, 5000, 'kas to answer the close');
    let outcome: string;
    try {
      outcome = early ?? (await withTimeout(response, 5000, 'the proxied request to end after its agent disconnected'));
    } catch (err) {
      return `${(err as Error).message} (reply head ${JSON.stringify(c.head)})`;
    }
    // A plain request cannot be answered with 1xx as its final status: kas must refuse such a head too.
    let headValid: boolean;
    try {
      headValid = decodeResponseHead(c.head).status >= 200;
    } catch {
      headValid = false;
    }
    outcomes[`kas reply: ${outcome}`] = (outcomes[`kas reply: ${outcome}`] ?? 0) + 1;
    if (!codedClose(code, false)) return `kas closed the connection with code ${code}, which is neither 1000 nor a tunnel error code`;
    if (!headValid && !outcome.startsWith('status 502')) return `an invalid reply head ${JSON.stringify(c.head)} gave the client "${outcome}" instead of a 502 Status`;
    return null;
  }

  /** Agent 1 still serves requests. */
  async healthy(): Promise<string | null> {
    try {
      const res = await withTimeout(proxyRequest(this.stack, 'GET', '/api/v1/namespaces'), 10_000, 'a request through agent 1');
      const body = await readAll(res);
      if (res.statusCode !== 200) return `a request through agent 1 got ${res.statusCode}: ${body.toString().slice(0, 200)}`;
      return null;
    } catch (err) {
      return `a request through agent 1 failed: ${(err as Error).message}`;
    }
  }

  /** Waits until no fuzz session of agent 2 is left and nothing is buffered. */
  async settled(): Promise<string | null> {
    const gone = await waitFor(() => this.stack.kas.registry.connections(2).length === 0, 'no session of agent 2', 10_000, { intervalMs: 20 }).then(() => true, () => false);
    return gone ? null : `${this.stack.kas.registry.connections(2).length} fuzz session(s) of agent 2 were still registered 10 s after the last case`;
  }

  async close(): Promise<void> {
    await this.stack.close();
    await this.upstream.close();
  }
}

// ---- agentk ---------------------------------------------------------------------------------

type ConnectionHandler = (ws: WebSocket) => void;

export class AgentkFuzzTarget {
  /** Requests the API server stand-in saw: method, path, Host. */
  readonly upstreamSeen: Array<{ method: string; url: string; host: string }>;
  /** Anything that reached the "evil" server (must stay empty). */
  readonly evilSeen: string[];
  readonly logs: LogCapture;
  readonly agent: Agentk;
  private readonly upstream: FakeKubeApi;
  private readonly evil: http.Server;
  readonly evilAddress: string;
  private readonly server: http.Server;
  private readonly wss: WebSocketServer;
  private waiting: ConnectionHandler | null = null;
  private readonly early: WebSocket[] = [];

  private constructor(fields: { agent: Agentk; upstream: FakeKubeApi; evil: http.Server; evilAddress: string; server: http.Server; wss: WebSocketServer; upstreamSeen: AgentkFuzzTarget['upstreamSeen']; evilSeen: string[]; logs: LogCapture }) {
    this.upstreamSeen = fields.upstreamSeen;
    this.evilSeen = fields.evilSeen;
    this.logs = fields.logs;
    this.agent = fields.agent;
    this.upstream = fields.upstream;
    this.evil = fields.evil;
    this.evilAddress = fields.evilAddress;
    this.server = fields.server;
    this.wss = fields.wss;
  }

  static async start(): Promise<AgentkFuzzTarget> {
    const seen: AgentkFuzzTarget['upstreamSeen'] = [];
    const evilSeen: string[] = [];
    const upstream = await startFakeKubeApi({
      handler: (req, res) => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '' });
        req.resume();
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"kind":"Fuzz"}');
      },
      record: false,
    });
    const evil = http.createServer((req, res) => {
      evilSeen.push(`${req.method} ${req.url}`);
      res.end('evil');
    });
    evil.on('connect', (req: http.IncomingMessage, socket: Duplex) => {
      evilSeen.push(`CONNECT ${req.url}`);
      socket.destroy();
    });
    evil.on('connection', () => evilSeen.push('a TCP connection'));
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    const evilAddress = `127.0.0.1:${(evil.address() as AddressInfo).port}`;
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 8 * 1024 * 1024 });
    const server = http.createServer((_req, res) => res.writeHead(404).end());
    const holder: { target: AgentkFuzzTarget | null } = { target: null };
    server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => holder.target!.onConnection(ws)));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const logs = new LogCapture();
    const agent = await startAgentk({
      kasAddress: `ws://127.0.0.1:${port}/`,
      token: 'glagent-fuzzed-agent-token-0123456789',
      apiServer: { url: new URL(upstream.url), tls: { ca: Buffer.from(upstream.caPem), rejectUnauthorized: true }, auth: { kind: 'token', token: upstream.token }, source: 'fuzz' },
      kasConnections: 1,
      observabilityListenAddress: '127.0.0.1:0',
      logger: createLogger({ name: 'agentk', level: 'debug', destination: logs }),
      defaultMetrics: false,
      drainGraceMs: 500,
      backoff: { baseMs: 5, capMs: 50 },
      limits: { maxFrameSize: AGENTK_FRAME_LIMIT, maxHeaderSize: 16 * 1024, maxStreams: 16 },
    });
    const target = new AgentkFuzzTarget({ agent, upstream, evil, evilAddress, server, wss, upstreamSeen: seen, evilSeen, logs });
    holder.target = target;
    return target;
  }

  private readonly hellos = new WeakMap<WebSocket, Promise<Buffer>>();
  /** A transport made at once for every connection, so a protocol session sees the HELLO too. */
  private readonly transports = new WeakMap<WebSocket, WsTransport>();

  private onConnection(ws: WebSocket): void {
    ws.on('error', () => undefined);
    // agentk sends HELLO at once: catch it before anyone else listens.
    this.hellos.set(ws, new Promise<Buffer>((resolve) => ws.once('message', (d: Buffer) => resolve(d))));
    this.transports.set(ws, new WsTransport(ws));
    const handler = this.waiting;
    this.waiting = null;
    if (handler) handler(ws);
    else this.early.push(ws);
  }

  /** The next connection agentk makes (it reconnects by itself after every case). */
  private nextConnection(): Promise<WebSocket> {
    const queued = this.early.shift();
    if (queued) return Promise.resolve(queued);
    return withTimeout(new Promise<WebSocket>((resolve) => (this.waiting = resolve)), 10_000, 'agentk to reconnect to the fake kas');
  }

  /** The first message agentk sends, which must be HELLO. */
  private firstMessage(ws: WebSocket): Promise<Buffer> {
    return withTimeout(this.hellos.get(ws)!, 5000, 'agentk\'s HELLO');
  }

  async rawCase(c: RawCase, outcomes: Record<string, number>): Promise<string | null> {
    const ws = await this.nextConnection();
    const hello = decodeFrame(await this.firstMessage(ws));
    if (hello.kind !== FrameKind.HELLO) return `agentk's first frame was kind ${hello.kind}, not HELLO`;
    const { code, closedByPeer, oversizedSent } = await playRaw(ws, c, openingFrame(c, FrameKind.WELCOME), AGENTK_FRAME_LIMIT);
    const key = `agentk close ${closedByPeer ? code : 'by fuzzer'}`;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
    if (closedByPeer && !codedClose(code, oversizedSent)) return `agentk closed the connection with code ${code}, which is neither 1000 nor a tunnel error code`;
    return null;
  }

  async openCase(c: OpenCase, outcomes: Record<string, number>): Promise<string | null> {
    const ws = await this.nextConnection();
    const session = new Session(this.transports.get(ws)!, { role: 'server', welcome: { connectionId: 'fuzz', agentId: 1 }, limits: { maxFrameSize: 1 << 20 } });
    try {
      await withTimeout(session.ready, 5000, 'the handshake with agentk');
      const settle = c.streams.map(async (s, i) => {
        const head = withEvil(s.head, this.evilAddress) as Head;
        let stream: TunnelStream;
        try {
          stream = session.openStream(head, { data: s.data ?? undefined });
        } catch (err) {
          return `opened locally refused: ${(err as { code?: string }).code ?? 'error'}`;
        }
        stream.on('error', () => undefined);
        if (s.resetAfterMs !== null) setTimeout(() => stream.reset('CANCELLED', 'fuzz'), s.resetAfterMs);
        else stream.end();
        const result = await withTimeout(
          new Promise<string>((resolve) => {
            let replied: string | null = null;
            stream.on('reply', (h: Head) => (replied = typeof h.status === 'number' ? `status ${h.status}` : 'reply'));
            stream.on('data', () => undefined);
            stream.once('end', () => resolve(replied ?? 'ended without reply'));
            stream.once('close', () => resolve(replied ? `${replied}, closed` : `reset ${(stream.errored as { code?: string } | null)?.code ?? 'none'}`));
          }),
          10_000,
          `agentk to answer or reset stream ${i} (head ${JSON.stringify(head).slice(0, 300)})`,
        );
        outcomes[`agentk stream: ${result}`] = (outcomes[`agentk stream: ${result}`] ?? 0) + 1;
        return null;
      });
      for (const r of await Promise.allSettled(settle)) if (r.status === 'rejected') return (r.reason as Error).message;
      if (session.state === 'closed') {
        outcomes[`agentk session closed: ${session.closeError?.code ?? 'clean'}`] = (outcomes[`agentk session closed: ${session.closeError?.code ?? 'clean'}`] ?? 0) + 1;
        return null;
      }
      // The same session still serves a plain request.
      const check = session.openStream(encodeRequestHead({ method: 'GET', path: '/api/v1/fuzz-check', headers: [], impersonate: null }), { end: true });
      const status = await withTimeout(
        new Promise<number>((resolve, reject) => {
          check.once('reply', (h: Head) => resolve(h.status as number));
          check.once('error', reject);
        }),
        10_000,
        'agentk to serve a valid request after the hostile streams',
      );
      check.resume();
      if (status !== 200) return `a valid request after the hostile streams got ${status}`;
      return null;
    } finally {
      session.close();
    }
  }

  /** agentk only ever talked to its API server, at its own Host, with origin-form paths. */
  check(): string | null {
    if (this.evilSeen.length > 0) return `agentk reached a server other than its API server: ${this.evilSeen.slice(0, 5).join('; ')}`;
    const host = new URL(this.upstream.url).host;
    const bad = this.upstreamSeen.find((s) => s.host !== host || !s.url.startsWith('/') || s.url.startsWith('//') || /(^|\/)(\.|%2e){1,2}(\/|\?|$)/i.test(s.url));
    if (bad) return `the API server saw a request it should not have: ${bad.method} ${bad.url} (Host ${bad.host})`;
    return null;
  }

  async close(): Promise<void> {
    await this.agent.stop();
    for (const c of this.wss.clients) c.terminate();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
    this.evil.closeAllConnections();
    await new Promise<void>((r) => this.evil.close(() => r()));
    await this.upstream.close();
  }
}

// ---- the runner -----------------------------------------------------------------------------

/** Runs fuzz cases round robin over the targets until the time or the count is up. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const targets = options.targets ?? FUZZ_TARGETS;
  const log = options.log ?? (() => undefined);
  const failures: FuzzFailure[] = [];
  const processErrors: string[] = [];
  const onUncaught = (err: unknown) => processErrors.push(`uncaught exception: ${(err as Error)?.stack ?? String(err)}`);
  const onRejection = (err: unknown) => processErrors.push(`unhandled rejection: ${(err as Error)?.stack ?? String(err)}`);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onRejection);
  const kas = await KasFuzzTarget.start();
  const agentk = await AgentkFuzzTarget.start();
  const report: FuzzReport = { cases: 0, byTarget: {}, outcomes: {}, healthChecks: 0, failures, heapStartMb: 0, heapEndMb: 0, durationMs: 0, seed: options.seed };
  const started = Date.now();
  try {
    const firstHealth = await kas.healthy();
    if (firstHealth) throw new Error(`the fuzz stack is not healthy before any case: ${firstHealth}`);
    report.heapStartMb = heapMb();
    const healthEvery = options.healthEvery ?? 8;
    for (let i = 0; i < options.maxCases && Date.now() - started < options.durationMs; i++) {
      const seed = options.seed + i;
      const target = targets[i % targets.length]!;
      let input = '';
      let failure: string | null;
      try {
        switch (target) {
          case 'kas-raw': {
            const c = sampleOne(rawCase, seed);
            input = `${c.opening.kind} opening; ${hexSummary(c.messages)}${c.oversized ? '; oversized' : ''}`;
            failure = await kas.rawCase(c, report.outcomes);
            break;
          }
          case 'kas-reply': {
            const c = sampleOne(replyCase, seed);
            input = JSON.stringify({ head: c.head, fin: c.fin, after: c.after.map((a) => a.kind) }).slice(0, 500);
            failure = await kas.replyCase(c, report.outcomes);
            break;
          }
          case 'agentk-raw': {
            const c = sampleOne(rawCase, seed);
            input = `${c.opening.kind} opening; ${hexSummary(c.messages)}${c.oversized ? '; oversized' : ''}`;
            failure = await agentk.rawCase(c, report.outcomes);
            break;
          }
          case 'agentk-open': {
            const c = sampleOne(openCase, seed);
            input = JSON.stringify(c.streams.map((s) => s.head), (_k, v: unknown) => (v instanceof Uint8Array ? `bin(${v.byteLength})` : v)).slice(0, 500);
            failure = await agentk.openCase(c, report.outcomes);
            break;
          }
        }
      } catch (err) {
        failure = `the case threw: ${(err as Error).message}`;
      }
      report.cases++;
      report.byTarget[target] = (report.byTarget[target] ?? 0) + 1;
      if (failure) {
        failures.push({ target, seed, what: failure, input });
        log(`FAIL ${target} seed ${seed}: ${failure}\n  input: ${input}`);
      }
      for (const e of processErrors.splice(0)) failures.push({ target: 'process', seed, what: e, input });
      if ((i + 1) % healthEvery === 0) {
        report.healthChecks++;
        const h = await kas.healthy();
        if (h) failures.push({ target: 'health', seed, what: h, input: '' });
        const a = agentk.check();
        if (a) failures.push({ target: 'agentk-open', seed, what: a, input: '' });
      }
      if ((i + 1) % 100 === 0) log(`${i + 1} cases, ${failures.length} failures, heap ${heapMb().toFixed(0)} MB, kas log ${(kas.stack.kasLogs.text.length / 2 ** 20).toFixed(1)} MB`);
      if (failures.length >= 20) break;
    }
    report.healthChecks++;
    const h = await kas.healthy();
    if (h) failures.push({ target: 'health', seed: null, what: h, input: '' });
    const a = agentk.check();
    if (a) failures.push({ target: 'agentk-open', seed: null, what: a, input: '' });
    const s = await kas.settled();
    if (s) failures.push({ target: 'kas-raw', seed: null, what: s, input: '' });
    for (const secret of [kas.stack.agentToken, kas.agent2Token, kas.stack.proxyToken]) {
      if (kas.stack.kasLogs.text.includes(secret)) failures.push({ target: 'kas-raw', seed: null, what: 'a token appeared in kas\'s logs', input: '' });
    }
    if (agentk.logs.text.includes('glagent-fuzzed-agent-token')) failures.push({ target: 'agentk-raw', seed: null, what: 'the agent token appeared in agentk\'s logs', input: '' });
    report.heapEndMb = heapMb();
  } finally {
    report.durationMs = Date.now() - started;
    await agentk.close().catch(() => undefined);
    await kas.close().catch(() => undefined);
    await sleep(50);
    for (const e of processErrors.splice(0)) failures.push({ target: 'process', seed: null, what: e, input: '' });
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onRejection);
  }
  return report;
}

/** A failure report a person can act on: what went wrong, and the seed that reproduces it. */
export function describeFailures(report: FuzzReport): string {
  return report.failures.map((f) => `[${f.target}${f.seed === null ? '' : ` seed ${f.seed}`}] ${f.what}${f.input ? `\n    input: ${f.input}` : ''}`).join('\n');
}
