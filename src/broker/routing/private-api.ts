/**
 * The private API listener: other kas replicas connect here (WebSocket, kas-to-kas JWT checked in
 * the upgrade handler) and open `route` streams for agents this replica holds. Each route stream is
 * spliced onto a new stream on the agent's session: heads, data, ends and resets relayed both ways
 * with backpressure, so upgrades and watches work across replicas exactly as locally.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { finished } from 'node:stream';
import { TunnelError, isTunnelError } from '../../protocol/errors.js';
import type { Head } from '../../protocol/frames.js';
import { decodeRouteHead } from '../../protocol/route.js';
import { Session } from '../../protocol/session.js';
import type { TunnelStream } from '../../protocol/stream.js';
import { listenOn, parseListenAddress } from '../../shared/address.js';
import type { Logger } from '../../shared/logger.js';
import { TunnelWebSocketServer } from '../../shared/tunnel-websocket.js';
import { bearerToken } from '../auth/bearer.js';
import type { TunnelConfig } from '../tunnel/config.js';
import { KAS_ISSUER, verifyForKas } from '../gitlab/jwt.js';
import type { AgentRegistry } from '../tunnel/agent-registry.js';
import { sessionOptionsFrom } from '../tunnel/session-options.js';

export interface PrivateApiDeps {
  address: string;
  secret: Buffer;
  tunnel: TunnelConfig;
  registry: AgentRegistry;
  /** How long a routed request may wait for the agent's session here (a reconnect in progress). */
  agentWaitMs: number;
  logger: Logger;
}

/** Open options of an inner stream whose route stream ended without data (most requests). */
const END_ONLY = Object.freeze({ end: true });

/**
 * Opens the stream towards the agent for a route stream and relays one onto the other: heads,
 * data, ends and resets both ways with backpressure. When the peer's direction has already ended
 * (a request without a body: its OPEN was final), the inner OPEN carries that end and whatever data
 * came with it, so agentk sees the request's framing exactly as the first kas sent it.
 * Throws what `openStream` throws (nothing is opened then).
 */
export function splice(outer: TunnelStream, session: Session, innerHead: Head): void {
  const whole = outer.takeWhole();
  const options = whole === null ? undefined : whole.length === 0 ? END_ONLY : { data: whole.length === 1 ? whole[0] : Buffer.concat(whole), end: true };
  const inner = session.openStream(innerHead, options);
  inner.once('reply', (head: Head) => {
    if (!outer.destroyed) outer.reply(head);
  });
  if (whole === null) outer.pipe(inner);
  inner.pipe(outer);
  finished(inner, (err) => {
    if (!err) return;
    outer.reset(isTunnelError(err) ? err.code : 'CANCELLED', err.message);
  });
  finished(outer, (err) => {
    if (!err) return;
    inner.reset(isTunnelError(err) ? err.code : 'CANCELLED', err.message);
  });
}

export class PrivateApi {
  private readonly deps: PrivateApiDeps;
  private readonly wss: TunnelWebSocketServer;
  private server: http.Server | null = null;
  private readonly sessions = new Set<Session>();
  private draining = false;

  constructor(deps: PrivateApiDeps) {
    this.deps = deps;
    this.wss = new TunnelWebSocketServer(sessionOptionsFrom(deps.tunnel));
  }

  async start(): Promise<string> {
    const server = http.createServer((_req, res) => {
      res.writeHead(426, { 'Content-Type': 'text/plain' });
      res.end('kas private API: WebSocket upgrade required\n');
    });
    server.headersTimeout = 10_000;
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('clientError', (_err, socket) => socket.destroy());
    const address = await listenOn(server, parseListenAddress(this.deps.address)!);
    this.server = server;
    return address;
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const bearer = bearerToken(req.rawHeaders);
    const refuse = (): void => {
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    };
    if (!bearer.ok) return refuse();
    void verifyForKas(bearer.token, this.deps.secret, { issuer: KAS_ISSUER }).then((claims) => {
      if (!claims || socket.destroyed) return refuse();
      this.wss.accept(req, socket, head, (transport) => {
        const session = new Session(transport, { role: 'server', ...sessionOptionsFrom(this.deps.tunnel) });
        this.sessions.add(session);
        session.on('stream', (s) => this.onRoute(s));
        session.once('close', () => this.sessions.delete(session));
      });
    });
  }

  private onRoute(outer: TunnelStream): void {
    let agentId: number;
    let innerHead: Head;
    try {
      ({ agentId, head: innerHead } = decodeRouteHead(outer.peerHead!));
    } catch (err) {
      outer.reset('PROTOCOL_ERROR', (err as Error).message);
      return;
    }
    // While this replica drains, or when the agent's sessions here are all draining, the request
    // belongs elsewhere: refuse at once (retryable) rather than wait for a session that will not come.
    const draining = this.draining || (this.deps.registry.connections(agentId).length > 0 && this.deps.registry.pick(agentId) === null);
    if (draining) {
      outer.reset('STREAM_REFUSED', `agent ${agentId} is moving away from this replica`);
      return;
    }
    const abort = new AbortController();
    outer.once('close', () => abort.abort());
    void this.deps.registry.waitFor(agentId, this.deps.agentWaitMs, abort.signal).then((session) => {
      if (outer.destroyed) return;
      if (!session) {
        outer.reset('STREAM_REFUSED', `agent ${agentId} is not connected to this replica`);
        return;
      }
      try {
        splice(outer, session, innerHead);
      } catch (err) {
        outer.reset(isTunnelError(err) ? err.code : 'INTERNAL', (err as Error).message);
      }
    });
  }

  /** Refuses new route streams and lets the routed ones finish (at most graceMs). */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    await Promise.all([...this.sessions].map((s) => s.drain('kas replica is shutting down', graceMs)));
  }

  async stop(): Promise<void> {
    for (const s of this.sessions) s.close(new TunnelError('SESSION_CLOSED', 'kas stopped'));
    const server = this.server;
    if (!server) return;
    this.server = null;
    await new Promise<void>((r) => server.close(() => r()));
  }
}
