/**
 * The connections to kas: `connections` slots, each keeping one session open. A slot dials, runs a
 * session until it ends, waits a backoff delay (full jitter) and dials again. On GOAWAY the slot
 * dials a replacement at once and leaves the old session to finish its streams (it closes itself
 * when drained). Streams kas opens are handed to the StreamHandlers registry.
 *
 * Ownership: the pool owns its WebSockets and sessions; `stop()` drains every session (GOAWAY, then
 * in-flight streams get `graceMs`), closes them and waits for the slots to end.
 */
import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import type { Head } from '../../protocol/frames.js';
import type { HeaderPair } from '../../protocol/http.js';
import { BufferBudget } from '../../protocol/flow.js';
import type { SessionLimits, SessionTuning } from '../../protocol/limits.js';
import { Session } from '../../protocol/session.js';
import { LogFields, type Logger } from '../../shared/logger.js';
import { followCaFile } from '../ca-file.js';
import type { AgentMetrics } from '../observability/metrics.js';
import type { FileReloader } from '../../shared/file-reloader.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { classifyDialFailure } from './dial-failure.js';
import { KasRefusedError, dialKas } from './kas-dialer.js';
import type { KasStreams } from './kas-streams.js';
import type { StreamHandlers } from './stream-handlers.js';

export interface TunnelPoolOptions {
  kasAddress: URL;
  token: string;
  kasHeaders: readonly HeaderPair[];
  /** PEM CA certificates to trust for wss:// instead of the system roots (as read at start). */
  kasCaCert?: string | Buffer;
  /** The file kasCaCert was read from: followed, so a rotated CA is used from the next dial on. */
  kasCaCertFile?: string;
  /** How often the CA file's stat is checked besides watch events, ms (default 10 s). */
  caPollMs?: number;
  /** Sessions to keep open. */
  connections: number;
  /** The handshake body besides the features (agent version, pod, Kubernetes version); asked at each dial. */
  hello: () => Head;
  handlers: StreamHandlers;
  /** Told of every session that opens, drains or closes, for the streams modules open towards kas. */
  kasStreams?: KasStreams;
  metrics: AgentMetrics;
  logger: Logger;
  backoff?: Partial<BackoffOptions>;
  limits?: Partial<SessionLimits>;
  tuning?: Partial<SessionTuning>;
  /** Bytes received and not yet consumed, over all sessions (default 128 MiB; each session also has its own cap). */
  processBufferLimit?: number;
  /** Deadline of the WebSocket handshake, ms. */
  handshakeTimeoutMs?: number;
  random?: () => number;
}

/** How one connection of a slot ended. */
interface ConnectionEnd {
  kind: 'failed' | 'closed' | 'goaway';
  /** How long the session was open (0 when it never was), ms. */
  upMs: number;
}

/** How long stop() waits for a closed session's WebSocket to finish its closing handshake. */
const SOCKET_CLOSE_WAIT_MS = 1000;
const DEFAULT_PROCESS_BUFFER_LIMIT = 128 * 1024 * 1024;

export class TunnelPool {
  private readonly options: TunnelPoolOptions;
  private readonly processBudget: BufferBudget;
  private readonly open = new Set<Session>();
  private readonly live = new Map<Session, WebSocket>();
  private readonly dialing = new Set<WebSocket>();
  private readonly sleeps = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  private loops: Promise<void>[] = [];
  private stopping = false;
  private started = false;
  /** The kas CA file, followed while the pool runs; null when there is no such file. */
  private readonly kasCa: FileReloader<Buffer> | null;
  /** Whether any slot ever completed a handshake with kas at this address (see dial-failure.ts). */
  private hadSession = false;

  constructor(options: TunnelPoolOptions) {
    this.options = options;
    this.kasCa =
      options.kasCaCertFile !== undefined && options.kasCaCert !== undefined
        ? followCaFile({ file: 'kas_ca', path: options.kasCaCertFile, source: '--kas-ca-cert-file', initial: Buffer.from(options.kasCaCert), metrics: options.metrics, logger: options.logger, pollMs: options.caPollMs })
        : null;
    this.processBudget = new BufferBudget(options.processBufferLimit ?? DEFAULT_PROCESS_BUFFER_LIMIT);
  }

  /** Sessions that completed the handshake and are not draining: those kas can put streams on. */
  get openSessions(): number {
    return this.open.size;
  }

  /** Every session not yet closed, draining ones included. */
  get liveSessions(): number {
    return this.live.size;
  }

  start(): void {
    if (this.started) throw new Error('the tunnel pool was already started');
    this.started = true;
    this.kasCa?.start();
    for (let slot = 0; slot < this.options.connections; slot++) this.loops.push(this.runSlot(slot));
  }

  /** Drains every session (in-flight streams get `graceMs`), then closes everything. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.kasCa?.close();
    for (const s of this.sleeps) {
      clearTimeout(s.timer);
      s.wake();
    }
    for (const ws of this.dialing) ws.terminate();
    const sockets = [...this.live.values()];
    await Promise.all([...this.live.keys()].map((s) => s.drain('agentk is shutting down', graceMs)));
    await Promise.all(this.loops);
    await Promise.all(sockets.map((ws) => closedOrTerminated(ws, SOCKET_CLOSE_WAIT_MS)));
  }

  private async runSlot(slot: number): Promise<void> {
    const backoff = new Backoff(this.options.backoff, this.options.random);
    const log = this.options.logger.child({ slot });
    while (!this.stopping) {
      const end = await this.connectOnce(log);
      if (this.stopping) return;
      const reset = backoff.connectionEnded(end.upMs);
      // A replacement for a connection that served its time goes out at once; a connection that
      // ends early (or is drained again and again) is retried after a growing delay.
      const delay = end.kind === 'goaway' && reset ? 0 : backoff.next();
      if (delay > 0) {
        log.info({ delayMs: delay, attempt: backoff.attempt }, 'connecting to kas again after a delay');
        await this.sleep(delay);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopping) return resolve();
      const entry = {
        timer: setTimeout(() => {
          this.sleeps.delete(entry);
          resolve();
        }, ms),
        wake: resolve,
      };
      this.sleeps.add(entry);
    });
  }

  private async connectOnce(log: Logger): Promise<ConnectionEnd> {
    const o = this.options;
    const { metrics } = o;
    let connection;
    let dialed: WebSocket | undefined;
    try {
      connection = await dialKas(
        {
          url: o.kasAddress,
          token: o.token,
          headers: o.kasHeaders,
          // Each dial trusts the CA file as it is now (rotation); live sessions keep their socket.
          ca: this.kasCa?.current ?? o.kasCaCert,
          limits: o.limits,
          tuning: o.tuning,
          handshakeTimeoutMs: o.handshakeTimeoutMs ?? 10_000,
        },
        (ws) => {
          dialed = ws;
          this.dialing.add(ws);
        },
      );
    } catch (err) {
      // A dial cut short by stop() is no failure to report; a refusal that came first still is.
      if (err instanceof KasRefusedError || !this.stopping) {
        const failure = classifyDialFailure(err, o.kasAddress, this.hadSession);
        metrics.connectAttempts.inc({ result: failure.result });
        log[failure.level]({ ...failure.fields, kasAddress: o.kasAddress.href }, failure.message);
      }
      return { kind: 'failed', upMs: 0 };
    } finally {
      if (dialed) this.dialing.delete(dialed);
    }
    const { ws, transport } = connection;
    if (this.stopping) {
      ws.terminate();
      return { kind: 'failed', upMs: 0 };
    }
    metrics.connectAttempts.inc({ result: 'ok' });
    const sessionLog = log.child({ [LogFields.sessionId]: randomBytes(4).toString('hex') });
    const session = new Session(transport, {
      role: 'client',
      hello: { ...o.hello(), features: o.handlers.types },
      limits: o.limits,
      tuning: o.tuning,
      processBudget: this.processBudget,
    });
    this.live.set(session, ws);
    return new Promise<ConnectionEnd>((resolve) => {
      let openedAt: number | null = null;
      let ended = false;
      const end = (kind: ConnectionEnd['kind']) => {
        if (ended) return;
        ended = true;
        resolve({ kind, upMs: openedAt === null ? 0 : Date.now() - openedAt });
      };
      const update = () => metrics.sessions.set(this.open.size);
      session.on('stream', (stream) => o.handlers.dispatch(stream, sessionLog));
      session.on('ready', (peer) => {
        openedAt = Date.now();
        this.hadSession = true;
        this.open.add(session);
        update();
        o.kasStreams?.added(session, peer);
        sessionLog.info({ kasAddress: o.kasAddress.href, kas: welcomeSummary(peer) }, 'connected to kas');
      });
      session.on('goaway', (info) => {
        this.open.delete(session);
        o.kasStreams?.removed(session);
        update();
        sessionLog.info({ [LogFields.code]: info.code, reason: info.message, graceMs: info.graceMs, streams: session.streamCount }, 'kas is draining this connection; opening a replacement');
        end('goaway');
      });
      session.on('close', (err) => {
        this.open.delete(session);
        o.kasStreams?.removed(session);
        this.live.delete(session);
        update();
        if (err?.code === 'AUTH_REVOKED') {
          // Like a 401 at the upgrade: no backoff reset however long the session was up.
          sessionLog.error({ [LogFields.code]: err.code, err: err.message }, 'kas revoked the agent token: check the token in --token-file or AGENTK_TOKEN');
          openedAt = null;
        } else if (err && !this.stopping) {
          sessionLog.warn({ [LogFields.code]: err.code, err: err.message }, openedAt === null ? 'handshake with kas failed' : 'connection to kas lost');
        } else {
          sessionLog.info('connection to kas closed');
        }
        end(openedAt === null ? 'failed' : 'closed');
      });
    });
  }
}

/** What of kas's WELCOME is worth a log line (never the limits' details). */
function welcomeSummary(peer: Head): Head {
  const summary: Head = {};
  for (const [k, v] of Object.entries(peer)) if (k !== 'limits' && (typeof v === 'string' || typeof v === 'number')) summary[k] = v;
  return summary;
}

function closedOrTerminated(ws: WebSocket, ms: number): Promise<void> {
  if (ws.readyState === ws.CLOSED) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      ws.terminate();
      resolve();
    }, ms);
    ws.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
