/**
 * The agent listener: agents dial in with a WebSocket upgrade carrying `Authorization: Bearer
 * <agent token>`. The token is checked in the upgrade handler, before the socket is accepted (401
 * with nothing else revealed); then a protocol session runs on the connection and, once its
 * handshake is done, the agent is registered. Sessions are drained at their maximum age (jittered) so
 * load rebalances across kas replicas, and on shutdown.
 */
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { TunnelError } from '../../protocol/errors.js';
import type { Head } from '../../protocol/frames.js';
import type { BufferBudget } from '../../protocol/flow.js';
import { Session } from '../../protocol/session.js';
import { listenOn, parseListenAddress } from '../../shared/address.js';
import type { Logger } from '../../shared/logger.js';
import { TunnelWebSocketServer } from '../../shared/tunnel-websocket.js';
import type { MessageTransport } from '../../protocol/transport.js';
import { bearerToken } from '../auth/bearer.js';
import type { AgentAuthenticator, AgentIdentity } from '../auth/types.js';
import type { AgentListenConfig, TunnelConfig } from './config.js';
import type { TunnelMetrics } from './metrics.js';
import type { AgentConnection, AgentMeta, AgentRegistry, DisconnectReason } from './agent-registry.js';
import type { AgentStreams } from './agent-streams.js';
import { sessionOptionsFrom } from './session-options.js';
import type { ListenerTls } from '../configuration/tls-reloader.js';
import { answerClientError } from '../client-error.js';

export interface AgentListenerDeps {
  listen: AgentListenConfig;
  /** The certificate and key (read while kas is created, then followed for rotation), or null for plain ws://. */
  tls: ListenerTls | null;
  tunnel: TunnelConfig;
  authenticator: AgentAuthenticator;
  registry: AgentRegistry;
  /** The stream types agentk may open towards kas (announced in WELCOME `features`). */
  streams: AgentStreams;
  metrics: TunnelMetrics;
  logger: Logger;
  processBudget: BufferBudget;
  /** Counts a connection attempt of a token (by its digest); false when over the per-minute limit. */
  connectionAllowed: (tokenDigest: string) => Promise<boolean>;
}

const MAX_META_LENGTH = 256;

function metaString(v: unknown): string {
  return typeof v === 'string' ? v.slice(0, MAX_META_LENGTH) : '';
}

/** Reads agent metadata from a HELLO body; tolerant of missing fields, strict about types and sizes. */
export function agentMetaFromHello(hello: Head): AgentMeta {
  const features = Array.isArray(hello.features) ? hello.features.filter((f): f is string => typeof f === 'string').slice(0, 64).map(metaString) : [];
  return {
    version: metaString(hello.agentVersion),
    commit: metaString(hello.agentCommit),
    podNamespace: metaString(hello.podNamespace),
    podName: metaString(hello.podName),
    kubernetesVersion: metaString(hello.kubernetesVersion),
    features,
  };
}

/**
 * Why a registered session ended, from its close error and whether kas drained it. A clean close
 * (null) that kas did not ask for followed the agent's GOAWAY.
 */
export function disconnectReason(err: TunnelError | null, drainedByKas: boolean): DisconnectReason {
  if (drainedByKas) return 'drain';
  if (err === null) return 'closed_by_agent';
  switch (err.code) {
    case 'KEEPALIVE_TIMEOUT':
      return 'keepalive_timeout';
    case 'AUTH_REVOKED':
      return 'token_revoked';
    case 'SESSION_CLOSED':
    case 'GOING_AWAY':
      return err.remote ? 'closed_by_agent' : 'drain';
    case 'CONNECTION_LOST':
      return 'connection_lost';
    default:
      return 'error';
  }
}

function refuse(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
  setTimeout(() => socket.destroy(), 1000).unref();
}

/**
 * The socket's error listener: a client that vanished mid-handshake is not our error, and a session's
 * failures surface through its close. One function at module level: a closure made in onUpgrade
 * would keep that call's scope (the upgrade request and its headers) alive as long as the connection.
 */
function ignoreError(): void {}

export class AgentListener {
  private readonly deps: AgentListenerDeps;
  private readonly wss: TunnelWebSocketServer;
  private server: http.Server | https.Server | null = null;
  private readonly sessions = new Set<Session>();
  /** Sessions kas itself began to drain (maximum age, shutdown): their end is a drain, not a failure. */
  private readonly drainedByKas = new WeakSet<Session>();
  private closing = false;
  boundAddress = '';

  constructor(deps: AgentListenerDeps) {
    this.deps = deps;
    this.wss = new TunnelWebSocketServer(sessionOptionsFrom(deps.tunnel));
  }

  async start(): Promise<string> {
    const { listen } = this.deps;
    const { tls } = this.deps;
    // A client must send its whole upgrade request within headers_timeout (slow-header attacks);
    // Node checks that deadline every connectionsCheckingInterval, so that follows the timeout.
    const checking = { connectionsCheckingInterval: Math.min(30_000, Math.max(100, listen.headers_timeout / 4)) };
    const server = tls ? https.createServer({ ...tls.current, ...checking }) : http.createServer(checking);
    server.headersTimeout = listen.headers_timeout;
    server.requestTimeout = Math.max(30_000, listen.headers_timeout);
    server.on('request', (_req, res) => {
      res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket', Connection: 'Upgrade' });
      res.end('agent endpoint: WebSocket upgrade required\n');
    });
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket));
    this.boundAddress = await listenOn(server, parseListenAddress(listen.address)!);
    // Rotated certificate files go into the server from now on (new connections get them).
    if (tls && server instanceof https.Server) tls.follow(server);
    this.server = server;
    return this.boundAddress;
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', ignoreError);
    const { metrics, logger } = this.deps;
    if (this.closing) {
      metrics.agentConnections.inc({ outcome: 'shutting_down' });
      refuse(socket, 503, 'Service Unavailable');
      return;
    }
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      metrics.agentConnections.inc({ outcome: 'bad_request' });
      refuse(socket, 400, 'Bad Request');
      return;
    }
    const bearer = bearerToken(req.rawHeaders);
    if (!bearer.ok) {
      metrics.agentConnections.inc({ outcome: 'unauthorized' });
      logger.info({ reason: bearer.message, remote: req.socket.remoteAddress }, 'agent connection refused');
      refuse(socket, 401, 'Unauthorized');
      return;
    }
    const digest = createHash('sha256').update(bearer.token).digest('hex');
    this.deps
      .connectionAllowed(digest)
      .then(async (allowed) => {
        if (!allowed) {
          metrics.agentConnections.inc({ outcome: 'rate_limited' });
          metrics.rateLimitHits.inc();
          refuse(socket, 429, 'Too Many Requests');
          return undefined;
        }
        return this.deps.authenticator.authenticate(bearer.token);
      })
      .then(
      (identity) => {
        if (identity === undefined) return;
        if (!identity) {
          metrics.agentConnections.inc({ outcome: 'unauthorized' });
          logger.info({ remote: req.socket.remoteAddress }, 'agent connection refused: unknown token');
          refuse(socket, 401, 'Unauthorized');
          return;
        }
        if (this.closing || socket.destroyed) {
          refuse(socket, 503, 'Service Unavailable');
          return;
        }
        this.wss.accept(req, socket, head, (transport) => this.accept(transport, identity, bearer.token));
      },
      (err: unknown) => {
        metrics.agentConnections.inc({ outcome: 'auth_error' });
        logger.warn({ err }, 'agent authentication failed');
        refuse(socket, 503, 'Service Unavailable');
      },
    );
  }

  private accept(transport: MessageTransport, identity: AgentIdentity, token: string): void {
    const { tunnel, registry, metrics, processBudget } = this.deps;
    const connectionId = randomUUID();
    const logger = this.deps.logger.child({ agentId: identity.agentId, sessionId: connectionId });
    const session = new Session(transport, {
      role: 'server',
      ...sessionOptionsFrom(tunnel),
      processBudget,
      welcome: { connectionId, agentId: identity.agentId, features: this.deps.streams.types },
    });
    this.sessions.add(session);
    metrics.sessions.inc();
    let unregister: ((reason: DisconnectReason, detail: string) => void) | null = null;
    let ageTimer: NodeJS.Timeout | null = null;
    let revalidateTimer: NodeJS.Timeout | null = null;
    session.ready.then(
      (hello) => {
        const meta = agentMetaFromHello(hello);
        const connection: AgentConnection = { connectionId, identity, session, connectedAt: new Date(), meta, agentToken: () => token };
        unregister = registry.register(connection);
        session.on('stream', (stream) => this.deps.streams.dispatch(stream, connection, logger));
        metrics.connectedAgents.set(registry.agentCount);
        metrics.agentConnections.inc({ outcome: 'connected' });
        logger.info({ agentVersion: meta.version, podName: meta.podName, podNamespace: meta.podNamespace }, 'agent connected');
        const age = this.deps.listen.max_connection_age;
        // ±10 % jitter, so connections made together do not all drain together.
        ageTimer = setTimeout(() => {
          logger.info('maximum connection age reached; draining the session');
          this.drainedByKas.add(session);
          void session.drain('maximum connection age reached', tunnel.drain_grace);
        }, age * (0.9 + Math.random() * 0.2));
        ageTimer.unref();
        revalidateTimer = this.scheduleRevalidation(session, identity, token, logger);
      },
      () => undefined,
    );
    session.on('close', (err: TunnelError | null) => {
      this.sessions.delete(session);
      if (ageTimer) clearTimeout(ageTimer);
      if (revalidateTimer) clearInterval(revalidateTimer);
      if (unregister) {
        const reason = disconnectReason(err, this.drainedByKas.has(session));
        metrics.agentDisconnects.inc({ reason });
        unregister(reason, err?.message ?? '');
      }
      metrics.sessions.dec();
      metrics.connectedAgents.set(registry.agentCount);
      metrics.sessionCloses.inc({ code: err?.code ?? 'none' });
      if (err && err.code !== 'SESSION_CLOSED' && err.code !== 'GOING_AWAY') logger.info({ code: err.code, err }, 'agent session closed with an error');
      else logger.info('agent session closed');
    });
  }

  /**
   * Checks the token of a connected session again every interval (which also tells GitLab the agent
   * is connected); a revoked token closes the session with AUTH_REVOKED. A failure to ask keeps the
   * session: GitLab being down must not disconnect every agent.
   */
  private scheduleRevalidation(session: Session, identity: AgentIdentity, token: string, logger: Logger): NodeJS.Timeout | null {
    const auth = this.deps.authenticator;
    if (!auth.revalidate || !auth.revalidateIntervalMs) return null;
    const timer = setInterval(() => {
      auth.revalidate!(token).then(
        (now) => {
          if (now && now.agentId === identity.agentId) return;
          logger.warn('agent token is no longer valid: closing the session');
          this.deps.metrics.agentConnections.inc({ outcome: 'revoked' });
          session.close(new TunnelError('AUTH_REVOKED', 'the agent token is no longer valid'));
        },
        (err: unknown) => logger.warn({ err }, 'could not revalidate the agent token; keeping the session'),
      );
    }, auth.revalidateIntervalMs);
    timer.unref();
    return timer;
  }

  /** Stops accepting connections and drains every session; resolves when all are closed. */
  async drain(graceMs: number): Promise<void> {
    this.closing = true;
    this.server?.close();
    for (const s of this.sessions) this.drainedByKas.add(s);
    await Promise.all([...this.sessions].map((s) => s.drain('kas is shutting down', graceMs)));
  }

  /** Closes everything at once. */
  async stop(): Promise<void> {
    this.closing = true;
    for (const s of this.sessions) {
      this.drainedByKas.add(s);
      s.close(new TunnelError('SESSION_CLOSED', 'kas stopped'));
    }
    const server = this.server;
    if (!server) return;
    server.closeAllConnections?.();
    await new Promise<void>((r) => server.close(() => r()));
    this.server = null;
  }
}
