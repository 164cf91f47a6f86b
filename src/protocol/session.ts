/**
 * A session: one transport (WebSocket) carrying many streams. It owns the handshake, the read loop
 * (which never waits on any stream), the fair writer (control frames first, then one bounded chunk
 * per stream in turn), keepalive, drain and close. See docs/protocol.md for the wire rules.
 *
 * Concurrency: everything runs on the event loop; methods may be called from any callback. A session
 * never throws from transport callbacks: a peer's mistakes become a coded RESET (stream errors) or a
 * coded close (session errors).
 */
import { EventEmitter } from 'node:events';
import { CLOSE_CODE_BASE, CLOSE_NORMAL, TunnelError, codeFromCloseCode, codeFromWire, wireOf, type TunnelErrorCode } from './errors.js';
import { FrameKind, decodeFrame, encodeFrame, type Frame, type Head } from './frames.js';
import { BufferBudget, ReceiveWindow } from './flow.js';
import { DEFAULT_LIMITS, DEFAULT_TUNING, FRAME_OVERHEAD, HEAD_ENVELOPE_SLACK, checkLimits, type SessionLimits, type SessionTuning } from './limits.js';
import { TunnelStream, type StreamOwner } from './stream.js';
import type { MessageTransport } from './transport.js';

export const PROTOCOL_VERSION = 1;

/** How many recent ping samples the base round-trip time is the least of. */
const RTT_SAMPLES = 8;

/** Received payloads smaller than this are copied out of the message they came in. */
const COPY_BELOW = 16 * 1024;

export type SessionRole = 'client' | 'server';
export type SessionState = 'handshaking' | 'open' | 'draining' | 'closed';

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

const ALLOWED: Record<SessionState, SessionState[]> = {
  handshaking: [],
  open: ['handshaking'],
  draining: ['open'],
  closed: ['handshaking', 'open', 'draining'],
};

export class Session extends EventEmitter<SessionEvents> implements StreamOwner {
  readonly role: SessionRole;
  readonly limits: Readonly<SessionLimits>;
  readonly tuning: Readonly<SessionTuning>;
  /** The peer's limits, known once the handshake is done. */
  peerLimits: Readonly<SessionLimits> | null = null;
  /** The peer's handshake body (HELLO for a server, WELCOME for a client). */
  peerInfo: Head | null = null;
  /** Smoothed round-trip time from pings, ms; null until the first pong. */
  rttMs: number | null = null;
  /**
   * The path's own round-trip time: the least of the recent ping samples, ms (null until the first
   * pong). Windows grow by this one: a ping that waited behind queued data measures the queue, and
   * growing windows by it would only queue more.
   */
  baseRttMs: number | null = null;
  private readonly rttSamples: number[] = [];
  /** Why the session closed (null for a clean close), once closed. */
  closeError: TunnelError | null = null;
  /** Resolves with the peer's handshake body; rejects if the session closes first. */
  readonly ready: Promise<Head>;

  private stateValue: SessionState = 'handshaking';
  private readonly transport: MessageTransport;
  private readonly streams = new Map<number, TunnelStream>();
  private readonly pendingOpens: TunnelStream[] = [];
  private localActive = 0;
  private peerActive = 0;
  private nextLocalId: number;
  private lastPeerId = 0;
  private readonly budget: BufferBudget;
  private readonly control: Uint8Array[] = [];
  private readonly ring: TunnelStream[] = [];
  private pumpScheduled = false;
  private pongDue: number | null = null;
  private pingOutstanding: { nonce: number; sentAt: number } | null = null;
  private pingNonce = 0;
  private pingTimer: NodeJS.Timeout | null = null;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private graceTimer: NodeJS.Timeout | null = null;
  private goawaySent = false;
  private goawayReceived = false;
  private readonly now: () => number;
  private readonly options: SessionOptions;
  private resolveReady!: (h: Head) => void;
  private rejectReady!: (e: TunnelError) => void;
  private readonly doneCallbacks: Array<(err?: Error | null) => void> = [];

  constructor(transport: MessageTransport, options: SessionOptions) {
    super();
    this.options = options;
    this.role = options.role;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.tuning = { ...DEFAULT_TUNING, ...options.tuning };
    const bad = checkLimits(this.limits);
    if (bad) throw new TunnelError('PROTOCOL_ERROR', `invalid session limit ${bad}`);
    this.transport = transport;
    this.now = options.now ?? (() => performance.now());
    this.nextLocalId = options.role === 'client' ? 1 : 2;
    this.budget = new BufferBudget(this.tuning.maxSessionBuffer, options.processBudget ?? null);
    this.ready = new Promise<Head>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {
      /* Observed through 'close'; a session that never became ready must not cause an unhandled rejection. */
    });
    this.handshakeTimer = setTimeout(() => this.fail(new TunnelError('HANDSHAKE_TIMEOUT', `no handshake within ${this.tuning.handshakeTimeoutMs} ms`)), this.tuning.handshakeTimeoutMs);
    this.handshakeTimer.unref?.();
    transport.start({
      message: (data) => this.onMessage(data),
      drain: () => this.pump(),
      closed: (code, reason) => this.onTransportClosed(code, reason),
    });
    if (this.role === 'client') {
      this.sendControl(encodeFrame({ kind: FrameKind.HELLO, body: { ...options.hello, v: PROTOCOL_VERSION, limits: { ...this.limits } } }));
    }
  }

  get state(): SessionState {
    return this.stateValue;
  }

  /** Streams open on this session (both directions), including those still queued to open. */
  get streamCount(): number {
    return this.streams.size + this.pendingOpens.length;
  }

  /** Bytes received and not yet consumed by readers. */
  get bufferedBytes(): number {
    return this.budget.used;
  }

  /** True while new streams may be opened here. */
  get acceptsStreams(): boolean {
    return (this.stateValue === 'open' || this.stateValue === 'handshaking') && !this.goawayReceived && !this.goawaySent;
  }

  private transition(to: SessionState): boolean {
    if (!ALLOWED[to].includes(this.stateValue)) return false;
    this.stateValue = to;
    return true;
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
    const ready = this.stateValue === 'open' && this.peerLimits !== null && this.localActive < this.peerLimits.maxStreams;
    if (!ready && this.pendingOpens.length >= this.tuning.maxPendingOpens) {
      throw new TunnelError('STREAM_LIMIT', `too many streams waiting to open (${this.pendingOpens.length})`);
    }
    if (this.nextLocalId > 0x7fffffff) throw new TunnelError('STREAM_REFUSED', 'stream ids exhausted; open the stream on a new session');
    const headSize = this.headSize(head);
    const maxHead = Math.min(this.limits.maxHeaderSize, this.peerLimits?.maxHeaderSize ?? Infinity);
    if (headSize > maxHead) throw new TunnelError('HEADER_TOO_LARGE', `stream head is ${headSize} bytes, the limit is ${maxHead}`);
    const id = this.nextLocalId;
    this.nextLocalId += 2;
    const stream = this.newStream(id, true, null);
    stream.ownHead = head;
    stream.outHead = head;
    stream.outHeadSize = headSize;
    if (options?.data && options.data.byteLength > 0) this.queueOut(stream, Buffer.from(options.data.buffer, options.data.byteOffset, options.data.byteLength), null);
    if (options?.end) stream.finQueued = true;
    if (ready) {
      this.activate(stream);
    } else {
      stream.pending = true;
      this.pendingOpens.push(stream);
    }
    if (options?.end) stream.end();
    return stream;
  }

  private headSize(head: Head): number {
    return encodeFrame({ kind: FrameKind.OPEN, id: 1, head, data: null, fin: false }).byteLength;
  }

  private newStream(id: number, local: boolean, peerHead: Head | null): TunnelStream {
    const window = new ReceiveWindow(this.limits.initialWindow, this.tuning.maxWindow, this.now());
    return new TunnelStream(this, id, local, peerHead, window, this.tuning.chunkSize);
  }

  private activate(stream: TunnelStream): void {
    stream.pending = false;
    stream.sendCredit = this.peerLimits!.initialWindow;
    this.streams.set(stream.id, stream);
    this.localActive++;
    this.schedule(stream);
  }

  private activatePending(): void {
    while (this.pendingOpens.length > 0 && this.stateValue === 'open' && this.peerLimits && this.localActive < this.peerLimits.maxStreams) {
      const stream = this.pendingOpens.shift()!;
      if (!stream.destroyed) this.activate(stream);
    }
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
    this.transition('draining');
    this.sendControl(encodeFrame({ kind: FrameKind.GOAWAY, code: wireOf(code), message: message.slice(0, 1024), lastStreamId: this.lastPeerId, graceMs }));
    this.refusePending('STREAM_REFUSED', 'session is draining');
    this.graceTimer = setTimeout(() => this.close(new TunnelError(code, `${message}: drain grace of ${graceMs} ms ended`)), graceMs);
    this.graceTimer.unref?.();
    this.closeIfDrained();
    return closed;
  }

  /** Closes the session: every open stream fails with `err` (SESSION_CLOSED when none is given). */
  close(err: TunnelError | null = null): void {
    if (this.stateValue === 'closed') return;
    this.flushCallbacks();
    this.pump();
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
    const clean = code === CLOSE_NORMAL && this.streams.size === 0 && this.pendingOpens.length === 0;
    this.teardown(clean ? null : err, err);
  }

  private teardown(closeError: TunnelError | null, streamError: TunnelError): void {
    this.transition('closed');
    this.closeError = closeError;
    for (const t of [this.pingTimer, this.handshakeTimer, this.graceTimer]) if (t) clearTimeout(t);
    this.pingTimer = this.handshakeTimer = this.graceTimer = null;
    this.rejectReady(closeError ?? streamError);
    const all = [...this.streams.values(), ...this.pendingOpens];
    this.pendingOpens.length = 0;
    for (const s of all) {
      s.gone = true;
      s.destroy(streamError);
    }
    this.streams.clear();
    this.control.length = 0;
    this.ring.length = 0;
    this.flushCallbacks();
    this.emit('close', closeError);
  }

  private refusePending(code: TunnelErrorCode, message: string): void {
    const pending = this.pendingOpens.splice(0);
    for (const s of pending) {
      s.gone = true;
      s.destroy(new TunnelError(code, message));
    }
  }

  private closeIfDrained(): void {
    if ((this.goawaySent || this.goawayReceived) && this.streams.size === 0 && this.pendingOpens.length === 0 && this.stateValue !== 'closed') {
      this.close(null);
    }
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
      frame = decodeFrame(data);
    } catch (err) {
      this.fail(err instanceof TunnelError ? err : new TunnelError('MALFORMED_FRAME', 'undecodable frame', { cause: err }));
      return;
    }
    try {
      this.dispatch(frame, data.byteLength);
    } catch (err) {
      this.fail(err instanceof TunnelError ? err : new TunnelError('INTERNAL', 'failed to process a frame', { cause: err }));
    }
    this.flushCallbacks();
  }

  private dispatch(frame: Frame, size: number): void {
    if (this.stateValue === 'handshaking') {
      this.onHandshake(frame);
      return;
    }
    switch (frame.kind) {
      case FrameKind.OPEN: return this.onOpen(frame.id, frame.head, frame.data, frame.fin, size);
      case FrameKind.REPLY: return this.onReply(frame.id, frame.head, frame.data, frame.fin, size);
      case FrameKind.DATA: return this.onData(frame.id, frame.data, frame.fin);
      case FrameKind.WINDOW: return this.onWindow(frame.id, frame.increment);
      case FrameKind.RESET: return this.onReset(frame.id, frame.code, frame.message);
      case FrameKind.PING:
        this.pongDue = frame.nonce;
        this.schedulePump();
        return;
      case FrameKind.PONG: return this.onPong(frame.nonce);
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
    if (body.v !== PROTOCOL_VERSION) throw new TunnelError('UNSUPPORTED_VERSION', `protocol version ${JSON.stringify(body.v)} is not supported (this side speaks ${PROTOCOL_VERSION})`);
    const peerLimits = parseLimits(body.limits);
    if (!peerLimits) throw new TunnelError('PROTOCOL_ERROR', 'handshake limits are missing or out of range');
    if (this.role === 'server') {
      const refusal = this.options.acceptHello?.(body) ?? null;
      if (refusal) throw refusal;
      this.sendControl(encodeFrame({ kind: FrameKind.WELCOME, body: { ...this.options.welcome, v: PROTOCOL_VERSION, limits: { ...this.limits } } }));
    }
    this.peerLimits = peerLimits;
    this.peerInfo = body;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.transition('open');
    this.startKeepalive();
    this.resolveReady(body);
    this.emit('ready', body);
    this.activatePending();
  }

  private peerParity(id: number): boolean {
    return this.role === 'server' ? id % 2 === 1 : id % 2 === 0;
  }

  private onOpen(id: number, head: Head, data: Uint8Array | null, fin: boolean, size: number): void {
    if (!this.peerParity(id)) throw new TunnelError('PROTOCOL_ERROR', `stream id ${id} has this side's parity`);
    if (id <= this.lastPeerId) throw new TunnelError('PROTOCOL_ERROR', `stream id ${id} was already used`);
    this.lastPeerId = id;
    if (this.goawaySent) return this.sendReset(id, 'STREAM_REFUSED', 'session is draining');
    const headSize = size - (data?.byteLength ?? 0) - HEAD_ENVELOPE_SLACK;
    if (headSize > this.limits.maxHeaderSize) return this.sendReset(id, 'HEADER_TOO_LARGE', `head of ${headSize} bytes exceeds ${this.limits.maxHeaderSize}`);
    if (this.peerActive >= this.limits.maxStreams) return this.sendReset(id, 'STREAM_LIMIT', `at most ${this.limits.maxStreams} concurrent streams`);
    if (this.listenerCount('stream') === 0) return this.sendReset(id, 'STREAM_REFUSED', 'this side accepts no streams');
    const stream = this.newStream(id, false, head);
    stream.sendCredit = this.peerLimits!.initialWindow;
    this.streams.set(id, stream);
    this.peerActive++;
    if (data && data.byteLength > 0 && !this.accept(stream, data)) return;
    if (fin) this.receiveFin(stream);
    try {
      this.emit('stream', stream);
    } catch (err) {
      // A bug in one stream's handler fails that stream, not the session (nor is it blamed on the peer).
      this.streamError(stream, 'INTERNAL', `stream handler failed: ${(err as Error).message}`);
    }
  }

  private onReply(id: number, head: Head, data: Uint8Array | null, fin: boolean, size: number): void {
    const stream = this.lookup(id);
    if (!stream) return;
    if (!stream.local || stream.peerHead !== null) return this.streamError(stream, 'PROTOCOL_ERROR', 'unexpected REPLY');
    const headSize = size - (data?.byteLength ?? 0) - HEAD_ENVELOPE_SLACK;
    if (headSize > this.limits.maxHeaderSize) return this.streamError(stream, 'HEADER_TOO_LARGE', `reply head of ${headSize} bytes exceeds ${this.limits.maxHeaderSize}`);
    stream.peerHead = head;
    try {
      stream.emit('reply', head);
    } catch (err) {
      return this.streamError(stream, 'INTERNAL', `reply handler failed: ${(err as Error).message}`);
    }
    if (stream.destroyed) return;
    if (data && data.byteLength > 0 && !this.accept(stream, data)) return;
    if (fin) this.receiveFin(stream);
  }

  private onData(id: number, data: Uint8Array, fin: boolean): void {
    const stream = this.lookup(id);
    if (!stream) return;
    if (stream.recvEnded) return this.streamError(stream, 'STREAM_CLOSED', 'DATA after END');
    if (stream.local && stream.peerHead === null) return this.streamError(stream, 'PROTOCOL_ERROR', 'DATA before REPLY');
    if (data.byteLength > 0 && !this.accept(stream, data)) return;
    if (fin) this.receiveFin(stream);
  }

  /** Finds the stream of a frame. Unknown ids of closed streams are ignored; ids never opened are a session error. */
  private lookup(id: number): TunnelStream | null {
    const stream = this.streams.get(id);
    if (stream) return stream;
    const ours = !this.peerParity(id);
    const everOpened = ours ? id < this.nextLocalId : id <= this.lastPeerId;
    if (!everOpened) throw new TunnelError('PROTOCOL_ERROR', `frame for stream ${id}, which was never opened`);
    return null;
  }

  private accept(stream: TunnelStream, data: Uint8Array): boolean {
    const n = data.byteLength;
    if (!stream.window.received(n)) {
      this.streamError(stream, 'FLOW_CONTROL', `peer sent ${n} bytes with ${stream.window.outstanding} bytes of credit`);
      return false;
    }
    if (!this.budget.tryReserve(n)) {
      this.streamError(stream, 'BUFFER_LIMIT', 'receive buffers are full');
      return false;
    }
    // The payload is a view into the received message. A large one is most of its message (big
    // messages arrive in buffers of their own), so it is kept as is: copying it cost about an eighth
    // of kas's CPU in bulk transfers. A small one may be a view into a larger read buffer that it
    // would keep alive, so it is copied.
    const buf = n >= COPY_BELOW ? Buffer.from(data.buffer, data.byteOffset, n) : Buffer.from(data);
    stream.recv.push(buf);
    stream.recvBytes += n;
    if (stream.wantsData) this.streamRead(stream);
    return true;
  }

  private receiveFin(stream: TunnelStream): void {
    stream.recvEnded = true;
    if (stream.wantsData || stream.recv.length === 0) this.streamRead(stream);
    this.maybeRetire(stream);
  }

  private onWindow(id: number, increment: number): void {
    const stream = this.lookup(id);
    if (!stream) return;
    if (stream.sendCredit + increment > 0x7fffffff) return this.streamError(stream, 'FLOW_CONTROL', 'window grew beyond 2^31-1');
    stream.sendCredit += increment;
    this.schedule(stream);
  }

  private onReset(id: number, wire: number, message: string): void {
    const stream = this.streams.get(id) ?? null;
    if (!stream) {
      this.lookup(id);
      return;
    }
    this.retire(stream);
    stream.destroy(new TunnelError(codeFromWire(wire), `reset by peer: ${message}`, { remote: true }));
  }

  private onPong(nonce: number): void {
    const p = this.pingOutstanding;
    if (!p || p.nonce !== nonce) return;
    this.pingOutstanding = null;
    const sample = Math.max(0, this.now() - p.sentAt);
    this.rttMs = this.rttMs === null ? sample : this.rttMs * 0.75 + sample * 0.25;
    this.rttSamples.push(sample);
    if (this.rttSamples.length > RTT_SAMPLES) this.rttSamples.shift();
    this.baseRttMs = Math.min(...this.rttSamples);
    this.emit('rtt', sample);
  }

  private onGoaway(wire: number, message: string, lastStreamId: number, graceMs: number): void {
    if (this.goawayReceived) return;
    this.goawayReceived = true;
    if (this.stateValue === 'open') this.transition('draining');
    // Streams we opened that the peer never processed can be retried elsewhere.
    for (const s of [...this.streams.values()]) {
      if (s.local && s.id > lastStreamId) {
        this.retire(s);
        s.destroy(new TunnelError('STREAM_REFUSED', 'peer is draining and did not process this stream', { remote: true }));
      }
    }
    this.refusePending('STREAM_REFUSED', 'peer is draining');
    this.emit('goaway', { code: codeFromWire(wire), message, graceMs });
    this.closeIfDrained();
  }

  // ---- keepalive -------------------------------------------------------------------------

  private startKeepalive(): void {
    this.sendPing();
    this.pingTimer = setInterval(() => {
      if (this.pingOutstanding) {
        this.fail(new TunnelError('KEEPALIVE_TIMEOUT', `no pong within ${this.tuning.pingIntervalMs} ms`));
        return;
      }
      this.sendPing();
    }, this.tuning.pingIntervalMs);
    this.pingTimer.unref?.();
  }

  private sendPing(): void {
    this.pingNonce = (this.pingNonce + 1) & 0x7fffffff;
    this.pingOutstanding = { nonce: this.pingNonce, sentAt: this.now() };
    this.sendControl(encodeFrame({ kind: FrameKind.PING, nonce: this.pingNonce }));
  }

  // ---- StreamOwner: calls from streams ---------------------------------------------------

  streamWrite(stream: TunnelStream, chunk: Buffer, done: (err?: Error | null) => void): void {
    if (stream.gone || this.stateValue === 'closed') {
      done(new TunnelError('SESSION_CLOSED', 'stream is closed'));
      return;
    }
    if (!stream.local && stream.ownHead === null) this.queueReply(stream, {});
    if (chunk.byteLength === 0) {
      // Nothing to frame, so the writer would never reach this callback and the stream would stall.
      this.doneCallbacks.push(done);
      this.flushCallbacksSoon();
      this.schedule(stream);
      return;
    }
    // While this stream has at most one chunk waiting, the write completes at once: the caller can
    // end the stream in the same turn, and its last data and END then leave in one frame. Beyond
    // that, completion waits for the writer, so a stream never queues more than a chunk here.
    if (stream.outBytes + chunk.byteLength <= this.tuning.chunkSize) {
      this.queueOut(stream, chunk, null);
      this.schedule(stream);
      done();
      return;
    }
    this.queueOut(stream, chunk, done);
    this.schedule(stream);
  }

  streamFinal(stream: TunnelStream, done: (err?: Error | null) => void): void {
    if (stream.gone || this.stateValue === 'closed') {
      done(new TunnelError('SESSION_CLOSED', 'stream is closed'));
      return;
    }
    if (!stream.local && stream.ownHead === null) this.queueReply(stream, {});
    stream.finQueued = true;
    if (stream.finSent) {
      done();
      return;
    }
    stream.finDone = done;
    this.schedule(stream);
  }

  streamReply(stream: TunnelStream, head: Head, data: Uint8Array | null, end: boolean): void {
    if (stream.gone || this.stateValue === 'closed') throw new TunnelError('SESSION_CLOSED', 'stream is closed');
    this.queueReply(stream, head);
    if (data && data.byteLength > 0) this.queueOut(stream, Buffer.from(data.buffer, data.byteOffset, data.byteLength), null);
    if (end) stream.finQueued = true;
    this.schedule(stream);
  }

  private queueReply(stream: TunnelStream, head: Head): void {
    const size = this.headSize(head);
    const max = Math.min(this.limits.maxHeaderSize, this.peerLimits?.maxHeaderSize ?? Infinity);
    if (size > max) throw new TunnelError('HEADER_TOO_LARGE', `reply head is ${size} bytes, the limit is ${max}`);
    stream.ownHead = head;
    stream.outHead = head;
    stream.outHeadSize = size;
  }

  private queueOut(stream: TunnelStream, buf: Buffer, done: ((err?: Error | null) => void) | null): void {
    stream.out.push({ buf, done });
    stream.outBytes += buf.byteLength;
  }

  streamRead(stream: TunnelStream): void {
    let consumed = 0;
    while (stream.wantsData && stream.recv.length > 0) {
      const buf = stream.recv.shift()!;
      stream.recvBytes -= buf.byteLength;
      consumed += buf.byteLength;
      stream.wantsData = stream.push(buf);
    }
    if (consumed > 0) {
      this.budget.release(consumed);
      if (!stream.recvEnded && !stream.gone && this.stateValue !== 'closed') {
        const increment = stream.window.consumed(consumed, this.now(), this.baseRttMs, this.budget.headroom() > 0.5);
        if (increment > 0) this.sendControl(encodeFrame({ kind: FrameKind.WINDOW, id: stream.id, increment }));
      }
    }
    if (stream.recvEnded && stream.recv.length === 0) this.pushEnd(stream);
  }

  streamTakeWhole(stream: TunnelStream): Buffer[] | null {
    if (!stream.recvEnded) return null;
    const whole = stream.recv;
    stream.recv = [];
    if (stream.recvBytes > 0) this.budget.release(stream.recvBytes);
    stream.recvBytes = 0;
    this.pushEnd(stream);
    return whole;
  }

  /** Ends the stream's readable side, once. */
  private pushEnd(stream: TunnelStream): void {
    if (stream.endPushed) return;
    stream.endPushed = true;
    stream.push(null);
  }

  streamDestroyed(stream: TunnelStream, err: Error | null): void {
    if (stream.recvBytes > 0) {
      this.budget.release(stream.recvBytes);
      stream.recvBytes = 0;
      stream.recv.length = 0;
    }
    // The error for pending callbacks is made only when there are some: a clean end has none, and
    // capturing a stack for every finished stream was measurable at thousands of requests a second.
    let failure: Error | null = err;
    const fail = () => (failure ??= new TunnelError('CANCELLED', 'stream destroyed'));
    for (const c of stream.out) if (c.done) this.doneCallbacks.push(() => c.done!(fail()));
    stream.out.length = 0;
    stream.outBytes = 0;
    if (stream.finDone) {
      const fd = stream.finDone;
      stream.finDone = null;
      this.doneCallbacks.push(() => fd(fail()));
    }
    this.flushCallbacksSoon();
    if (stream.pending) {
      const i = this.pendingOpens.indexOf(stream);
      if (i >= 0) this.pendingOpens.splice(i, 1);
      stream.pending = false;
      stream.gone = true;
      return;
    }
    if (stream.gone) return;
    const cleanlyDone = stream.finSent && stream.recvEnded;
    // A stream whose OPEN never went out is unknown to the peer, which would take a RESET for it as a
    // frame for a never-opened id and close the whole session. Its id is simply skipped.
    const peerKnowsIt = !stream.local || stream.headSent;
    if (!cleanlyDone && peerKnowsIt && this.stateValue !== 'closed') {
      const code: TunnelErrorCode = err instanceof TunnelError && !err.remote ? err.code : 'CANCELLED';
      this.sendReset(stream.id, code, err?.message ?? 'stream cancelled');
    }
    this.retire(stream);
  }

  // ---- the writer ------------------------------------------------------------------------

  private streamError(stream: TunnelStream, code: TunnelErrorCode, message: string): void {
    this.retire(stream);
    this.sendReset(stream.id, code, message);
    stream.destroy(new TunnelError(code, message));
  }

  private sendReset(id: number, code: TunnelErrorCode, message: string): void {
    this.sendControl(encodeFrame({ kind: FrameKind.RESET, id, code: wireOf(code), message: message.slice(0, 1024) }));
  }

  /** Forgets a stream: it no longer counts against limits and its frames are ignored from now on. */
  private retire(stream: TunnelStream): void {
    if (stream.gone) return;
    stream.gone = true;
    if (this.streams.delete(stream.id)) {
      if (stream.local) this.localActive--;
      else this.peerActive--;
    }
    this.activatePending();
    this.closeIfDrainedSoon();
  }

  /** Retires a stream whose two directions both ended cleanly. */
  private maybeRetire(stream: TunnelStream): void {
    if (stream.finSent && stream.recvEnded) this.retire(stream);
  }

  private closeIfDrainedSoon(): void {
    if (this.goawaySent || this.goawayReceived) queueMicrotask(() => this.closeIfDrained());
  }

  private sendControl(frame: Uint8Array): void {
    if (this.stateValue === 'closed') return;
    this.control.push(frame);
    if (this.transport.bufferedAmount > this.tuning.maxTransportBacklog) {
      this.fail(new TunnelError('BUFFER_LIMIT', `peer does not read: more than ${this.tuning.maxTransportBacklog} bytes queued for it`));
      return;
    }
    this.schedulePump();
  }

  private schedule(stream: TunnelStream): void {
    if (!stream.inRing && !stream.pending && !stream.gone && this.hasSendable(stream)) {
      stream.inRing = true;
      this.ring.push(stream);
    }
    this.schedulePump();
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private hasSendable(s: TunnelStream): boolean {
    if (s.outHead !== null) return true;
    if (!s.headSent) return false;
    if (s.outBytes > 0) return s.sendCredit > 0;
    return s.finQueued && !s.finSent;
  }

  /** Sends control frames, then one bounded chunk per ready stream in turn, while the transport takes more. */
  private pump(): void {
    if (this.stateValue === 'closed') return;
    const t = this.transport;
    t.cork?.();
    try {
      if (this.pongDue !== null) {
        this.control.push(encodeFrame({ kind: FrameKind.PONG, nonce: this.pongDue }));
        this.pongDue = null;
      }
      for (const frame of this.control) t.send(frame);
      this.control.length = 0;
      if (this.stateValue === 'handshaking') return;
      while (this.ring.length > 0 && !t.backpressured) {
        const s = this.ring.shift()!;
        s.inRing = false;
        if (s.gone) continue;
        const frame = this.nextFrame(s);
        if (frame) t.send(frame);
        if (!s.gone && this.hasSendable(s)) {
          s.inRing = true;
          this.ring.push(s);
        }
      }
    } finally {
      t.uncork?.();
    }
    this.flushCallbacks();
  }

  /** Builds the next frame of one stream: its head (with what data fits), or one chunk, or its END. */
  private nextFrame(s: TunnelStream): Uint8Array | null {
    const peerMax = this.peerLimits!.maxFrameSize;
    const chunkLimit = Math.min(this.tuning.chunkSize, peerMax - FRAME_OVERHEAD);
    if (s.outHead !== null) {
      const head = s.outHead;
      s.outHead = null;
      s.headSent = true;
      const room = Math.min(chunkLimit, peerMax - s.outHeadSize - FRAME_OVERHEAD);
      const data = room > 0 ? this.takeOut(s, Math.min(room, s.sendCredit)) : null;
      const fin = s.finQueued && s.outBytes === 0;
      if (fin) this.markFinSent(s);
      return encodeFrame({ kind: s.local ? FrameKind.OPEN : FrameKind.REPLY, id: s.id, head, data, fin });
    }
    if (s.outBytes > 0) {
      const data = this.takeOut(s, Math.min(chunkLimit, s.sendCredit));
      if (!data) return null;
      const fin = s.finQueued && s.outBytes === 0;
      if (fin) this.markFinSent(s);
      return encodeFrame({ kind: FrameKind.DATA, id: s.id, data, fin });
    }
    if (s.finQueued && !s.finSent) {
      this.markFinSent(s);
      return encodeFrame({ kind: FrameKind.DATA, id: s.id, data: new Uint8Array(0), fin: true });
    }
    return null;
  }

  private markFinSent(s: TunnelStream): void {
    s.finSent = true;
    if (s.finDone) {
      const fd = s.finDone;
      s.finDone = null;
      this.doneCallbacks.push(() => fd());
    }
    this.maybeRetire(s);
  }

  /** Takes up to n bytes from the stream's queue (concatenating small writes), spending credit. */
  private takeOut(s: TunnelStream, n: number): Buffer | null {
    if (n <= 0 || s.outBytes === 0) return null;
    const pieces: Buffer[] = [];
    let taken = 0;
    while (taken < n && s.out.length > 0) {
      const c = s.out[0]!;
      const want = n - taken;
      if (c.buf.byteLength <= want) {
        pieces.push(c.buf);
        taken += c.buf.byteLength;
        s.out.shift();
        if (c.done) this.doneCallbacks.push(c.done);
      } else {
        pieces.push(c.buf.subarray(0, want));
        c.buf = c.buf.subarray(want);
        taken += want;
      }
    }
    s.outBytes -= taken;
    s.sendCredit -= taken;
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, taken);
  }

  /** Write callbacks run after the writer's loop, so user code never re-enters it. */
  private flushCallbacks(): void {
    while (this.doneCallbacks.length > 0) {
      const cbs = this.doneCallbacks.splice(0);
      for (const cb of cbs) cb();
    }
  }

  private flushCallbacksSoon(): void {
    if (this.doneCallbacks.length > 0) queueMicrotask(() => this.flushCallbacks());
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
