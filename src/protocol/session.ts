/**
 * A session: one transport (WebSocket) carrying many streams. This file is its lifecycle: the
 * handshake, the read loop (which never waits on any stream), drain (GOAWAY) and close. The parts it
 * is made of each have a file: the fair writer (fair-writer.ts), keepalive and RTT (keepalive.ts), the
 * stream table with its frame dispatch (stream-table.ts, stream-entry.ts), and the transition tables
 * of the session (session-states.ts) and of each stream direction (stream-states.ts). See
 * docs/protocol.md for the wire rules.
 *
 * Concurrency: everything runs on the event loop; methods may be called from any callback. A session
 * never throws from transport callbacks: a peer's mistakes become a coded RESET (stream errors) or a
 * coded close (session errors).
 */
import { EventEmitter } from 'node:events';
import { CLOSE_CODE_BASE, CLOSE_NORMAL, TunnelError, codeFromCloseCode, codeFromWire, wireOf, type TunnelErrorCode } from './errors.js';
import { FairWriter, type WriterHost } from './fair-writer.js';
import { FrameKind, RAW_DATA_HEADER_SIZE, RAW_DATA_MARKER, decodeFrame, decodeFrameV2, encodeFrame, type Frame, type Head } from './frames.js';
import { BufferBudget } from './flow.js';
import { Keepalive, type KeepaliveHost } from './keepalive.js';
import { DEFAULT_LIMITS, DEFAULT_TUNING, checkLimits, type SessionLimits, type SessionTuning } from './limits.js';
import { nextSessionState, type SessionState } from './session-states.js';
import { StreamTable, type StreamTableHost } from './stream-table.js';
import type { TunnelStream } from './stream.js';
import type { MessageTransport, TransportHandlers } from './transport.js';

export type { SessionState } from './session-states.js';

/**
 * The base protocol version: what every HELLO's `v` says, and what every side speaks. Later versions
 * are offered in HELLO's `vmax` and chosen in WELCOME's `v` (docs/protocol.md, "Versions").
 */
export const PROTOCOL_VERSION = 1;
/** The highest protocol version this code speaks. Version 2: raw DATA frames. */
export const MAX_PROTOCOL_VERSION = 2;

export type SessionRole = 'client' | 'server';

export interface SessionOptions {
  /** The client (agentk, which dials) sends HELLO and opens odd stream ids; the server (kas) even ids. */
  role: SessionRole;
  limits?: Partial<SessionLimits>;
  tuning?: Partial<SessionTuning>;
  /** A budget shared by all sessions of the process (bytes received and not yet consumed). */
  processBudget?: BufferBudget;
  /** Client: what the HELLO says besides version and limits (agent metadata, features). */
  hello?: Head;
  /** Server: what the WELCOME says besides version and limits. */
  welcome?: Head;
  /**
   * Server: checks the peer's HELLO body; return an error to refuse the session (it is closed with
   * that error's code). Called once, before any stream exists.
   */
  acceptHello?: (hello: Head) => TunnelError | null;
  /** Clock, for tests. */
  now?: () => number;
  /**
   * The highest protocol version this side offers (client) or accepts (server), 1 to
   * MAX_PROTOCOL_VERSION (the default). 1 behaves exactly as code that knows only version 1.
   */
  maxVersion?: number;
}

export interface GoawayInfo {
  code: TunnelErrorCode;
  message: string;
  graceMs: number;
}

/** Events of a session; listeners run on the event loop and must not throw. */
export interface SessionEvents {
  /** The handshake completed; the argument is the peer's handshake body. */
  ready: [peer: Head];
  /** The peer opened a stream. Without a listener, peer streams are refused. */
  stream: [stream: TunnelStream];
  /** The peer is draining: open nothing new here and open a replacement session. */
  goaway: [info: GoawayInfo];
  /** The session is closed; null for a clean close. Emitted once. */
  close: [err: TunnelError | null];
  /** A round-trip time sample from a ping, ms. */
  rtt: [ms: number];
}

export class Session extends EventEmitter<SessionEvents> {
  /**
   * The session's side of its parts: the transport's handlers, the writer's, keepalive's and the
   * stream table's host, as one object whose methods sit on one prototype. As closures (one per
   * callback, 15 in all) they cost each session about a kilobyte more, and kas holds a session per
   * agent. Defined in the class body, so it may call the session's private members.
   */
  private static readonly Links = class SessionLinks implements TransportHandlers, WriterHost, KeepaliveHost, StreamTableHost {
    constructor(private readonly session: Session) {}
    // The transport's.
    message(data: Uint8Array): void {
      this.session.onMessage(data);
    }
    messageParts(pieces: readonly Uint8Array[], length: number): void {
      this.session.onMessageParts(pieces, length);
    }
    drain(): void {
      this.session.writer.pump();
    }
    closed(code: number, reason: string): void {
      this.session.onTransportClosed(code, reason);
    }
    // The writer's and keepalive's.
    fail(err: TunnelError): void {
      this.session.fail(err);
    }
    sendControl(frame: Uint8Array): void {
      this.session.writer.sendControl(frame);
    }
    rtt(sampleMs: number): void {
      this.session.emit('rtt', sampleMs);
    }
    // The stream table's.
    state(): SessionState {
      return this.session.stateValue;
    }
    goawaySent(): boolean {
      return this.session.goawaySent;
    }
    peerLimits(): Readonly<SessionLimits> | null {
      return this.session.peerLimits;
    }
    rttForGrowth(): number | null {
      return this.session.keepalive.rttForGrowth();
    }
    hasStreamListener(): boolean {
      return this.session.listenerCount('stream') > 0;
    }
    deliverStream(stream: TunnelStream): void {
      this.session.emit('stream', stream);
    }
    streamRetired(): void {
      this.session.closeIfDrainedSoon();
    }
  };

  readonly role: SessionRole;
  readonly limits: Readonly<SessionLimits>;
  readonly tuning: Readonly<SessionTuning>;
  /** The peer's limits, known once the handshake is done. */
  peerLimits: Readonly<SessionLimits> | null = null;
  /** The peer's handshake body (HELLO for a server, WELCOME for a client). */
  peerInfo: Head | null = null;
  /** Why the session closed (null for a clean close), once closed. */
  closeError: TunnelError | null = null;
  /** Resolves with the peer's handshake body; rejects if the session closes first. */
  readonly ready: Promise<Head>;
  /** The protocol version the handshake chose (1 until then). */
  version = PROTOCOL_VERSION;
  private readonly maxVersion: number;

  private stateValue: SessionState = 'handshaking';
  private readonly transport: MessageTransport;
  private readonly budget: BufferBudget;
  private readonly writer: FairWriter;
  private readonly keepalive: Keepalive;
  private readonly table: StreamTable;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private graceTimer: NodeJS.Timeout | null = null;
  private goawaySent = false;
  private goawayReceived = false;
  private readonly options: SessionOptions;
  private resolveReady!: (h: Head) => void;
  private rejectReady!: (e: TunnelError) => void;

  constructor(transport: MessageTransport, options: SessionOptions) {
    super();
    this.options = options;
    this.role = options.role;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.tuning = { ...DEFAULT_TUNING, ...options.tuning };
    const bad = checkLimits(this.limits);
    if (bad) throw new TunnelError('PROTOCOL_ERROR', `invalid session limit ${bad}`);
    this.maxVersion = options.maxVersion ?? MAX_PROTOCOL_VERSION;
    if (!Number.isInteger(this.maxVersion) || this.maxVersion < PROTOCOL_VERSION || this.maxVersion > MAX_PROTOCOL_VERSION) {
      throw new TunnelError('PROTOCOL_ERROR', `invalid session maxVersion ${this.maxVersion}`);
    }
    this.transport = transport;
    const now = options.now ?? (() => performance.now());
    this.budget = new BufferBudget(this.tuning.maxSessionBuffer, options.processBudget ?? null);
    // One object answers every part's calls back into the session (see SessionLinks).
    const links = new Session.Links(this);
    this.writer = new FairWriter(transport, this.tuning, links);
    this.keepalive = new Keepalive(this.tuning.pingIntervalMs, now, links);
    // The table reads the session's state through this view; only the session moves it.
    this.table = new StreamTable({
      clientSide: options.role === 'client',
      limits: this.limits,
      tuning: this.tuning,
      budget: this.budget,
      writer: this.writer,
      now,
      host: links,
    });
    this.ready = new Promise<Head>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {
      /* Observed through 'close'; a session that never became ready must not cause an unhandled rejection. */
    });
    this.handshakeTimer = setTimeout(() => this.fail(new TunnelError('HANDSHAKE_TIMEOUT', `no handshake within ${this.tuning.handshakeTimeoutMs} ms`)), this.tuning.handshakeTimeoutMs);
    this.handshakeTimer.unref?.();
    transport.start(links);
    if (this.role === 'client') {
      // `v` stays the base version (a kas that knows only version 1 checks it); `vmax` offers more.
      const body: Head = { ...options.hello, v: PROTOCOL_VERSION, limits: { ...this.limits } };
      if (this.maxVersion > PROTOCOL_VERSION) body.vmax = this.maxVersion;
      else delete body.vmax;
      this.writer.sendControl(encodeFrame({ kind: FrameKind.HELLO, body }));
    }
  }

  get state(): SessionState {
    return this.stateValue;
  }

  /** Smoothed round-trip time from pings, ms; null until the first pong. */
  get rttMs(): number | null {
    return this.keepalive.rttMs;
  }

  /**
   * The path's own round-trip time: the least of the recent ping samples, ms (null until the first
   * pong). Windows grow by this one: a ping that waited behind queued data measures the queue, and
   * growing windows by it would only queue more.
   */
  get baseRttMs(): number | null {
    return this.keepalive.baseRttMs;
  }

  /** Streams open on this session (both directions), including those still queued to open. */
  get streamCount(): number {
    return this.table.count;
  }

  /** Bytes received and not yet consumed by readers. */
  get bufferedBytes(): number {
    return this.budget.used;
  }

  /** True while new streams may be opened here. */
  get acceptsStreams(): boolean {
    return (this.stateValue === 'open' || this.stateValue === 'handshaking') && !this.goawayReceived && !this.goawaySent;
  }

  /** Moves the session's state; a move the table does not allow is a bug here and throws. */
  private moveTo(to: SessionState): void {
    this.stateValue = nextSessionState(this.stateValue, to);
  }

  // ---- opening streams -------------------------------------------------------------------

  /**
   * Opens a stream with `head` (and optionally its first data and the end of this direction, sent
   * in the same frame when they fit). No round trip: data may be written at once. Throws
   * TunnelError STREAM_REFUSED when the session is draining or closed, STREAM_LIMIT when the peer's
   * stream limit and the pending-open queue are both full, HEADER_TOO_LARGE for an oversized head.
   */
  openStream(head: Head, options?: { data?: Uint8Array; end?: boolean }): TunnelStream {
    if (!this.acceptsStreams) throw new TunnelError('STREAM_REFUSED', `session is ${this.goawayReceived || this.goawaySent ? 'draining' : this.stateValue}; open the stream elsewhere`);
    return this.table.open(head, options);
  }

  // ---- draining and closing --------------------------------------------------------------

  /**
   * Starts a drain: tells the peer (GOAWAY) to open nothing new here, refuses new streams on this
   * side, lets open streams finish for `graceMs`, then resets what is left (GOING_AWAY) and closes.
   * Resolves when the session is closed.
   */
  drain(message = 'draining', graceMs = this.tuning.drainGraceMs, code: TunnelErrorCode = 'GOING_AWAY'): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (this.stateValue === 'closed') resolve();
      else this.once('close', () => resolve());
    });
    if (this.stateValue === 'handshaking') {
      this.close(new TunnelError(code, message));
      return closed;
    }
    if (this.goawaySent || this.stateValue === 'closed') return closed;
    this.goawaySent = true;
    // A session the peer is already draining is in that state; only an open one moves.
    if (this.stateValue === 'open') this.moveTo('draining');
    this.writer.sendControl(encodeFrame({ kind: FrameKind.GOAWAY, code: wireOf(code), message: message.slice(0, 1024), lastStreamId: this.table.lastPeerId, graceMs }));
    this.table.refusePending('STREAM_REFUSED', 'session is draining');
    this.graceTimer = setTimeout(() => this.close(new TunnelError(code, `${message}: drain grace of ${graceMs} ms ended`)), graceMs);
    this.graceTimer.unref?.();
    this.closeIfDrained();
    return closed;
  }

  /** Closes the session: every open stream fails with `err` (SESSION_CLOSED when none is given). */
  close(err: TunnelError | null = null): void {
    if (this.stateValue === 'closed') return;
    this.writer.flushCallbacks();
    this.writer.pump();
    this.teardown(err, err ?? new TunnelError('SESSION_CLOSED', 'session closed'));
    const code = err ? CLOSE_CODE_BASE + err.wire : CLOSE_NORMAL;
    this.transport.close(code, (err?.message ?? 'closed').slice(0, 120));
  }

  private fail(err: TunnelError): void {
    this.close(err);
  }

  private onTransportClosed(code: number, reason: string): void {
    if (this.stateValue === 'closed') return;
    const remoteCode = code === CLOSE_NORMAL ? 'SESSION_CLOSED' : codeFromCloseCode(code);
    const err = new TunnelError(remoteCode, `connection closed by peer (${code}${reason ? `: ${reason}` : ''})`, { remote: true });
    const clean = code === CLOSE_NORMAL && this.table.count === 0;
    this.teardown(clean ? null : err, err);
  }

  private teardown(closeError: TunnelError | null, streamError: TunnelError): void {
    this.moveTo('closed');
    this.writer.stop();
    this.closeError = closeError;
    this.keepalive.stop();
    for (const t of [this.handshakeTimer, this.graceTimer]) if (t) clearTimeout(t);
    this.handshakeTimer = this.graceTimer = null;
    this.rejectReady(closeError ?? streamError);
    this.table.abortAll(streamError);
    this.writer.flushCallbacks();
    this.emit('close', closeError);
  }

  private closeIfDrained(): void {
    if ((this.goawaySent || this.goawayReceived) && this.table.count === 0 && this.stateValue !== 'closed') {
      this.close(null);
    }
  }

  private closeIfDrainedSoon(): void {
    if (this.goawaySent || this.goawayReceived) queueMicrotask(() => this.closeIfDrained());
  }

  // ---- the read loop ---------------------------------------------------------------------

  private onMessage(data: Uint8Array): void {
    if (this.stateValue === 'closed') return;
    const max = this.stateValue === 'handshaking' ? this.limits.maxHeaderSize : this.limits.maxFrameSize;
    if (data.byteLength > max) {
      this.fail(new TunnelError('FRAME_TOO_LARGE', `frame of ${data.byteLength} bytes exceeds the limit of ${max}`));
      return;
    }
    let frame: Frame;
    try {
      frame = this.version >= 2 ? decodeFrameV2(data) : decodeFrame(data);
    } catch (err) {
      this.fail(err instanceof TunnelError ? err : new TunnelError('MALFORMED_FRAME', 'undecodable frame', { cause: err }));
      return;
    }
    try {
      this.dispatch(frame, data.byteLength);
    } catch (err) {
      this.fail(err instanceof TunnelError ? err : new TunnelError('INTERNAL', 'failed to process a frame', { cause: err }));
    }
    this.writer.flushCallbacks();
  }

  /**
   * A message that arrived in pieces. A raw DATA frame whose header lies in the first piece goes to
   * its stream piece by piece, without joining them (in bulk transfers most frames span two socket
   * reads); anything else is joined and read as one message.
   */
  private onMessageParts(pieces: readonly Uint8Array[], length: number): void {
    const first = pieces[0];
    const rawData = this.version >= 2 && this.stateValue !== 'handshaking' && first !== undefined && first.byteLength >= RAW_DATA_HEADER_SIZE && first[0] === RAW_DATA_MARKER;
    if (!rawData || this.stateValue === 'closed') {
      this.onMessage(pieces.length === 1 ? first! : Buffer.concat(pieces, length));
      return;
    }
    if (length > this.limits.maxFrameSize) {
      this.fail(new TunnelError('FRAME_TOO_LARGE', `frame of ${length} bytes exceeds the limit of ${this.limits.maxFrameSize}`));
      return;
    }
    let frame: Frame;
    try {
      frame = decodeFrameV2(first);
    } catch (err) {
      this.fail(err instanceof TunnelError ? err : new TunnelError('MALFORMED_FRAME', 'undecodable frame', { cause: err }));
      return;
    }
    if (frame.kind !== FrameKind.DATA) return; // a raw frame always decodes as DATA
    try {
      this.table.onDataPieces(frame.id, [frame.data, ...pieces.slice(1)], frame.fin);
    } catch (err) {
      this.fail(err instanceof TunnelError ? err : new TunnelError('INTERNAL', 'failed to process a frame', { cause: err }));
    }
    this.writer.flushCallbacks();
  }

  private dispatch(frame: Frame, size: number): void {
    if (this.stateValue === 'handshaking') {
      this.onHandshake(frame);
      return;
    }
    const table = this.table;
    switch (frame.kind) {
      case FrameKind.OPEN: return table.onOpen(frame.id, frame.head, frame.data, frame.fin, size);
      case FrameKind.REPLY: return table.onReply(frame.id, frame.head, frame.data, frame.fin, size);
      case FrameKind.DATA: return table.onData(frame.id, frame.data, frame.fin);
      case FrameKind.WINDOW: return table.onWindow(frame.id, frame.increment);
      case FrameKind.RESET: return table.onReset(frame.id, frame.code, frame.message);
      case FrameKind.PING: return this.writer.answerPing(frame.nonce);
      case FrameKind.PONG: return this.keepalive.onPong(frame.nonce);
      case FrameKind.GOAWAY: return this.onGoaway(frame.code, frame.message, frame.lastStreamId, frame.graceMs);
      case FrameKind.HELLO:
      case FrameKind.WELCOME:
        throw new TunnelError('PROTOCOL_ERROR', 'handshake frame after the handshake');
    }
  }

  private onHandshake(frame: Frame): void {
    const expected = this.role === 'server' ? FrameKind.HELLO : FrameKind.WELCOME;
    if (frame.kind !== expected) throw new TunnelError('PROTOCOL_ERROR', `the first frame must be ${this.role === 'server' ? 'HELLO' : 'WELCOME'}`);
    const body = frame.body;
    const version = this.role === 'server' ? this.versionOfHello(body) : this.versionOfWelcome(body);
    const peerLimits = parseLimits(body.limits);
    if (!peerLimits) throw new TunnelError('PROTOCOL_ERROR', 'handshake limits are missing or out of range');
    if (this.role === 'server') {
      const refusal = this.options.acceptHello?.(body) ?? null;
      if (refusal) throw refusal;
      this.writer.sendControl(encodeFrame({ kind: FrameKind.WELCOME, body: { ...this.options.welcome, v: version, limits: { ...this.limits } } }));
    }
    this.version = version;
    this.table.rawData = version >= 2;
    this.peerLimits = peerLimits;
    this.peerInfo = body;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.moveTo('open');
    this.writer.start(peerLimits.maxFrameSize);
    this.keepalive.start();
    this.resolveReady(body);
    this.emit('ready', body);
    this.table.activatePending();
  }

  /** Server: HELLO's `v` must be the base version; the version chosen is the least of `vmax` and ours. */
  private versionOfHello(body: Head): number {
    if (body.v !== PROTOCOL_VERSION) throw new TunnelError('UNSUPPORTED_VERSION', `protocol version ${JSON.stringify(body.v)} is not supported (this side speaks ${PROTOCOL_VERSION} to ${this.maxVersion}; higher versions are offered in vmax)`);
    const offered = body.vmax;
    if (offered === undefined) return PROTOCOL_VERSION;
    if (typeof offered !== 'number' || !Number.isInteger(offered) || offered < PROTOCOL_VERSION) throw new TunnelError('PROTOCOL_ERROR', 'handshake vmax must be an integer of at least 1');
    return Math.min(offered, this.maxVersion);
  }

  /** Client: WELCOME's `v` is the version the server chose, at most what HELLO offered. */
  private versionOfWelcome(body: Head): number {
    const v = body.v;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < PROTOCOL_VERSION || v > this.maxVersion) {
      throw new TunnelError('UNSUPPORTED_VERSION', `protocol version ${JSON.stringify(v)} is not supported (this side speaks ${PROTOCOL_VERSION} to ${this.maxVersion})`);
    }
    return v;
  }

  private onGoaway(wire: number, message: string, lastStreamId: number, graceMs: number): void {
    if (this.goawayReceived) return;
    this.goawayReceived = true;
    // A session that is draining already (it sent GOAWAY itself) stays so.
    if (this.stateValue === 'open') this.moveTo('draining');
    // Streams we opened that the peer never processed can be retried elsewhere.
    this.table.refuseUnprocessed(lastStreamId);
    this.table.refusePending('STREAM_REFUSED', 'peer is draining');
    this.emit('goaway', { code: codeFromWire(wire), message, graceMs });
    this.closeIfDrained();
  }
}

function parseLimits(v: unknown): SessionLimits | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  const fields = ['maxFrameSize', 'maxStreams', 'maxHeaderSize', 'initialWindow'] as const;
  if (!fields.every((f) => typeof o[f] === 'number')) return null;
  const limits: SessionLimits = {
    maxFrameSize: o.maxFrameSize as number,
    maxStreams: o.maxStreams as number,
    maxHeaderSize: o.maxHeaderSize as number,
    initialWindow: o.initialWindow as number,
  };
  return checkLimits(limits) === null ? limits : null;
}
