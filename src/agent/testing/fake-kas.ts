/**
 * A stand-in for kas made from the protocol alone, for agentk's tests: an HTTP(S) server whose
 * upgrade handler checks `Authorization: Bearer <token>` (401 otherwise) and runs a server session
 * on each accepted WebSocket. Tests open `http` streams on those sessions as kas would.
 */
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeResponseHead, encodeRequestHead, type HeaderPair, type HttpRequestHead } from '../../protocol/http.js';
import { Session } from '../../protocol/session.js';
import type { TunnelStream } from '../../protocol/stream.js';
import type { CertificatePair } from '../../shared/tls-cert.js';
import { WsTransport } from '../../shared/ws-transport.js';
import { readAll } from '../../../test/support/streams.js';
import { waitFor } from '../../../test/support/wait.js';

export interface FakeKasSession {
  session: Session;
  ws: WebSocket;
  /** Headers of the upgrade request. */
  headers: http.IncomingHttpHeaders;
}

export interface HttpAnswer {
  status: number;
  headers: HeaderPair[];
  body: Buffer;
}

export class FakeKas {
  readonly url: string;
  /** Every session accepted, in order. */
  readonly accepted: FakeKasSession[] = [];
  upgradeAttempts = 0;
  unauthorized = 0;
  private readonly server: http.Server;
  private readonly wss: WebSocketServer;

  private constructor(server: http.Server, wss: WebSocketServer, url: string) {
    this.server = server;
    this.wss = wss;
    this.url = url;
  }

  /**
   * `features`: the stream types the WELCOME says this kas serves (default none, as an older kas);
   * `onStream`: serves the streams agentk opens (default: refused).
   */
  static async start(options: { token: string; tls?: CertificatePair; path?: string; features?: string[]; onStream?: (stream: TunnelStream, session: Session) => void }): Promise<FakeKas> {
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 2 * 1024 * 1024 });
    const server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }) : http.createServer();
    server.on('request', (_req, res) => res.writeHead(404).end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const kas = new FakeKas(server, wss, `${options.tls ? 'wss' : 'ws'}://127.0.0.1:${port}${options.path ?? '/'}`);
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      kas.upgradeAttempts++;
      if (req.headers.authorization !== `Bearer ${options.token}`) {
        kas.unauthorized++;
        // Node's HTTP server took its error listener off the socket when it handed the upgrade over:
        // an agent that resets the connection after reading the 401 must not crash the test process.
        socket.on('error', () => socket.destroy());
        socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const session = new Session(new WsTransport(ws), { role: 'server', welcome: { kasVersion: 'fake', ...(options.features && { features: options.features }) } });
        const onStream = options.onStream;
        if (onStream) session.on('stream', (stream) => onStream(stream, session));
        kas.accepted.push({ session, ws, headers: req.headers });
      });
    });
    return kas;
  }

  /** Sessions that completed the handshake and are neither draining nor closed. */
  get openSessions(): Session[] {
    return this.accepted.map((a) => a.session).filter((s) => s.state === 'open' && s.acceptsStreams);
  }

  /** The first open session, waiting for one if needed. */
  async session(timeoutMs = 10_000): Promise<Session> {
    await this.waitFor(() => this.openSessions.length > 0, 'agentk to connect to the fake kas', timeoutMs);
    return this.openSessions[0]!;
  }

  /** `waitFor` of test/support/wait.ts with this fake's shorter default timeout. */
  waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    return waitFor(cond, what, timeoutMs);
  }

  /** Opens an `http` stream as kas's Kubernetes API proxy would. */
  open(session: Session, head: HttpRequestHead, options?: { data?: Uint8Array; end?: boolean }): TunnelStream {
    return session.openStream(encodeRequestHead(head), options);
  }

  /** Waits for the reply head of a stream kas opened. */
  static async reply(stream: TunnelStream): Promise<{ status: number; headers: HeaderPair[] }> {
    if (!stream.peerHead) await once(stream, 'reply');
    return decodeResponseHead(stream.peerHead!);
  }

  /** Sends a whole request and reads the whole answer. */
  async request(head: HttpRequestHead, body?: Buffer, session?: Session): Promise<HttpAnswer> {
    const s = this.open(session ?? (await this.session()), head, { data: body, end: true });
    const reply = await FakeKas.reply(s);
    const data = await readAll(s);
    return { ...reply, body: data };
  }

  async close(): Promise<void> {
    for (const a of this.accepted) a.session.close();
    for (const c of this.wss.clients) c.terminate();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
