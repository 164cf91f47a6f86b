/**
 * The streams of one session: ids by parity (docs/protocol.md, "Stream ids"), the table of known
 * streams and the queue of opens waiting for the peer's stream limit, and the dispatch of stream
 * frames (OPEN, REPLY, DATA, WINDOW, RESET) to their entries.
 *
 * A peer frame that may not come in its stream's state is answered as the transition table says (a
 * coded RESET of that stream); a frame for an id that was never opened, or an id reused, throws a
 * coded error that closes the session. Either way the peer's mistake never throws out of the
 * session's read loop unhandled.
 */
import { TunnelError, codeFromWire, wireOf, type TunnelErrorCode } from './errors.js';
import type { FairWriter } from './fair-writer.js';
import { FrameKind, HEAD_FRAME_BASE, encodeFrame, packHead, type Head } from './frames.js';
import type { BufferBudget } from './flow.js';
import { HEAD_ENVELOPE_SLACK, type SessionLimits, type SessionTuning } from './limits.js';
import type { SessionState } from './session-states.js';
import { IdMap } from './id-map.js';
import { StreamEntry } from './stream-entry.js';
import { RECV_MACHINE, RecvEvent, RecvState, SendState, advance, refusalOf } from './stream-states.js';
import type { TunnelStream } from './stream.js';

/** What the stream table needs from its session. */
export interface StreamTableHost {
  /** The session's state (the table reads it, never moves it). */
  state(): SessionState;
  /** True once this side sent GOAWAY: the peer's new streams are refused. */
  goawaySent(): boolean;
  /** The peer's limits, once the handshake is done. */
  peerLimits(): Readonly<SessionLimits> | null;
  /** The base round-trip time for window growth (Keepalive.rttForGrowth: null until it can be trusted). */
  rttForGrowth(): number | null;
  /** True when the program takes streams the peer opens (otherwise they are refused). */
  hasStreamListener(): boolean;
  /** Hands a stream the peer opened to the program; may throw (the stream then fails alone). */
  deliverStream(stream: TunnelStream): void;
  /** The table forgot a stream: a draining session may now be done. */
  streamRetired(): void;
}

/** Everything the table is made of; the session builds it once. */
export interface StreamTableParts {
  /** Client: opens odd ids; server: even ids. */
  clientSide: boolean;
  limits: Readonly<SessionLimits>;
  tuning: Readonly<SessionTuning>;
  budget: BufferBudget;
  writer: FairWriter;
  now: () => number;
  host: StreamTableHost;
}

export class StreamTable {
  /** This side's limits (what it receives). */
  readonly limits: Readonly<SessionLimits>;
  readonly tuning: Readonly<SessionTuning>;
  /** Bytes received and not yet read, over the session's streams. */
  readonly budget: BufferBudget;
  readonly writer: FairWriter;
  readonly now: () => number;
  readonly host: StreamTableHost;
  /** DATA frames go out raw (protocol version 2, set by the session once negotiated). */
  rawData = false;
  private readonly clientSide: boolean;
  /** The streams by id: an IdMap, not a Map (every stream comes and goes; see id-map.ts). */
  private readonly byId = new IdMap<StreamEntry>();
  private readonly pendingOpens: StreamEntry[] = [];
  private localActive = 0;
  private peerActive = 0;
  private nextLocalId: number;
  private lastPeer = 0;

  constructor(parts: StreamTableParts) {
    this.clientSide = parts.clientSide;
    this.limits = parts.limits;
    this.tuning = parts.tuning;
    this.budget = parts.budget;
    this.writer = parts.writer;
    this.now = parts.now;
    this.host = parts.host;
    this.nextLocalId = parts.clientSide ? 1 : 2;
  }

  /** Streams known (both directions) plus those queued to open. */
  get count(): number {
    return this.byId.size + this.pendingOpens.length;
  }

  /** The highest id the peer opened (what a GOAWAY reports). */
  get lastPeerId(): number {
    return this.lastPeer;
  }

  // ---- opening ---------------------------------------------------------------------------

  /**
   * Opens a stream of this side (the session checked that it may). Throws STREAM_LIMIT when the
   * peer's limit and the pending-open queue are both full, STREAM_REFUSED when ids ran out,
   * HEADER_TOO_LARGE for an oversized head.
   */
  open(head: Head, options?: { data?: Uint8Array; end?: boolean }): TunnelStream {
    const peerLimits = this.host.peerLimits();
    const ready = this.host.state() === 'open' && peerLimits !== null && this.localActive < peerLimits.maxStreams;
    if (!ready && this.pendingOpens.length >= this.tuning.maxPendingOpens) {
      throw new TunnelError('STREAM_LIMIT', `too many streams waiting to open (${this.pendingOpens.length})`);
    }
    if (this.nextLocalId > 0x7fffffff) throw new TunnelError('STREAM_REFUSED', 'stream ids exhausted; open the stream on a new session');
    const packed = this.checkHead(head, 'stream');
    const id = this.nextLocalId;
    this.nextLocalId += 2;
    const entry = new StreamEntry(this, id, true, null);
    entry.setHead(head, packed);
    if (options?.data && options.data.byteLength > 0) entry.queueOut(Buffer.from(options.data.buffer, options.data.byteOffset, options.data.byteLength), null);
    if (options?.end) entry.finQueued = true;
    if (ready) {
      this.activate(entry);
    } else {
      entry.pending = true;
      this.pendingOpens.push(entry);
    }
    if (options?.end) entry.stream.end();
    return entry.stream;
  }

  /**
   * Packs a head and measures it as a sender does (an OPEN with id 1 and no data), refusing one over
   * either side's limit. The packed head is what the stream's OPEN or REPLY frame carries.
   */
  checkHead(head: Head, what: string): Uint8Array {
    const packed = packHead(head);
    const size = packed.byteLength + HEAD_FRAME_BASE;
    const max = Math.min(this.limits.maxHeaderSize, this.host.peerLimits()?.maxHeaderSize ?? Infinity);
    if (size > max) throw new TunnelError('HEADER_TOO_LARGE', `${what} head is ${size} bytes, the limit is ${max}`);
    return packed;
  }

  /** Opens queued streams while the session is open and the peer's limit allows. */
  activatePending(): void {
    const peerLimits = this.host.peerLimits();
    while (this.pendingOpens.length > 0 && this.host.state() === 'open' && peerLimits && this.localActive < peerLimits.maxStreams) {
      const entry = this.pendingOpens.shift()!;
      if (!entry.stream.destroyed) this.activate(entry);
    }
  }

  private activate(entry: StreamEntry): void {
    entry.pending = false;
    entry.sendCredit = this.host.peerLimits()!.initialWindow;
    this.byId.set(entry.id, entry);
    this.localActive++;
    this.writer.schedule(entry);
  }

  // ---- refusing and forgetting -------------------------------------------------------------

  /** Fails every stream still queued to open; the peer never heard of them. */
  refusePending(code: TunnelErrorCode, message: string): void {
    const pending = this.pendingOpens.splice(0);
    for (const entry of pending) {
      this.forget(entry);
      entry.stream.destroy(new TunnelError(code, message));
    }
  }

  /** A queued stream was destroyed by its user: it leaves the queue and is forgotten. */
  dropPending(entry: StreamEntry): void {
    const i = this.pendingOpens.indexOf(entry);
    if (i >= 0) this.pendingOpens.splice(i, 1);
    this.forget(entry);
  }

  /** The peer is draining: streams of this side it never processed fail, safe to retry elsewhere. */
  refuseUnprocessed(lastStreamId: number): void {
    for (const entry of this.inIdOrder()) {
      if (entry.local && entry.id > lastStreamId) {
        this.abort(entry);
        entry.stream.destroy(new TunnelError('STREAM_REFUSED', 'peer is draining and did not process this stream', { remote: true }));
      }
    }
  }

  /** The known streams, oldest first (the order a Map kept; these walks are rare). */
  private inIdOrder(): StreamEntry[] {
    return this.byId.values().sort((a, b) => a.id - b.id);
  }

  /** The session closed: every stream fails with `err`, and the table is empty. */
  abortAll(err: TunnelError): void {
    const all = [...this.inIdOrder(), ...this.pendingOpens];
    this.pendingOpens.length = 0;
    for (const entry of all) {
      this.forget(entry);
      entry.stream.destroy(err);
    }
    this.byId.clear();
  }

  /** Aborts a stream the table knows: both directions end as Aborted and it is forgotten. */
  abort(entry: StreamEntry): void {
    entry.abortDirections();
    this.retire(entry);
  }

  /** Retires a stream whose two directions both ended cleanly. */
  maybeRetire(entry: StreamEntry): void {
    if (entry.send === SendState.Ended && entry.recv === RecvState.Ended) this.retire(entry);
  }

  /** Resets a stream for the peer's mistake (or a failed handler): RESET with `code`, and the user sees the same. */
  streamError(entry: StreamEntry, code: TunnelErrorCode, message: string): void {
    // A handler may have destroyed the stream before it failed; the RESET still goes out, as it always has.
    if (!entry.retired) this.abort(entry);
    this.sendReset(entry.id, code, message);
    entry.stream.destroy(new TunnelError(code, message));
  }

  sendReset(id: number, code: TunnelErrorCode, message: string): void {
    this.writer.sendControl(encodeFrame({ kind: FrameKind.RESET, id, code: wireOf(code), message: message.slice(0, 1024) }));
  }

  /** Marks a stream forgotten without the table's counting: for queued opens and for a closing session. */
  private forget(entry: StreamEntry): void {
    entry.pending = false;
    entry.abortDirections();
    entry.retired = true;
  }

  /** Forgets a stream: it no longer counts against limits and its frames are ignored from now on. */
  private retire(entry: StreamEntry): void {
    if (entry.retired) return;
    entry.retired = true;
    if (this.byId.delete(entry.id)) {
      if (entry.local) this.localActive--;
      else this.peerActive--;
    }
    this.activatePending();
    this.host.streamRetired();
  }

  // ---- frames from the peer ----------------------------------------------------------------

  onOpen(id: number, head: Head, data: Uint8Array | null, fin: boolean, size: number): void {
    if (!this.peerParity(id)) throw new TunnelError('PROTOCOL_ERROR', `stream id ${id} has this side's parity`);
    if (id <= this.lastPeer) throw new TunnelError('PROTOCOL_ERROR', `stream id ${id} was already used`);
    this.lastPeer = id;
    if (this.host.goawaySent()) return this.sendReset(id, 'STREAM_REFUSED', 'session is draining');
    const headSize = size - (data?.byteLength ?? 0) - HEAD_ENVELOPE_SLACK;
    if (headSize > this.limits.maxHeaderSize) return this.sendReset(id, 'HEADER_TOO_LARGE', `head of ${headSize} bytes exceeds ${this.limits.maxHeaderSize}`);
    if (this.peerActive >= this.limits.maxStreams) return this.sendReset(id, 'STREAM_LIMIT', `at most ${this.limits.maxStreams} concurrent streams`);
    if (!this.host.hasStreamListener()) return this.sendReset(id, 'STREAM_REFUSED', 'this side accepts no streams');
    const entry = new StreamEntry(this, id, false, head);
    entry.sendCredit = this.host.peerLimits()!.initialWindow;
    this.byId.set(id, entry);
    this.peerActive++;
    if (data && data.byteLength > 0 && !entry.receiveData(data)) return;
    if (fin) entry.receiveEnd();
    try {
      this.host.deliverStream(entry.stream);
    } catch (err) {
      // A bug in one stream's handler fails that stream, not the session (nor is it blamed on the peer).
      this.streamError(entry, 'INTERNAL', `stream handler failed: ${(err as Error).message}`);
    }
  }

  onReply(id: number, head: Head, data: Uint8Array | null, fin: boolean, size: number): void {
    const entry = this.lookup(id);
    if (!entry) return;
    const refusal = refusalOf(RECV_MACHINE, entry.recv, RecvEvent.Head);
    if (refusal) return this.streamError(entry, refusal.code, refusal.message);
    const headSize = size - (data?.byteLength ?? 0) - HEAD_ENVELOPE_SLACK;
    if (headSize > this.limits.maxHeaderSize) return this.streamError(entry, 'HEADER_TOO_LARGE', `reply head of ${headSize} bytes exceeds ${this.limits.maxHeaderSize}`);
    entry.recv = advance(RECV_MACHINE, entry.recv, RecvEvent.Head, id);
    const stream = entry.stream;
    stream.replied(head);
    try {
      stream.emit('reply', head);
    } catch (err) {
      return this.streamError(entry, 'INTERNAL', `reply handler failed: ${(err as Error).message}`);
    }
    if (stream.destroyed) return;
    if (data && data.byteLength > 0 && !entry.receiveData(data)) return;
    if (fin) entry.receiveEnd();
  }

  onData(id: number, data: Uint8Array, fin: boolean): void {
    const entry = this.dataEntry(id);
    if (!entry) return;
    if (data.byteLength > 0 && !entry.receiveData(data)) return;
    if (fin) entry.receiveEnd();
  }

  /** One DATA frame whose payload came in pieces (see Session.onMessageParts): each piece is received as it is. */
  onDataPieces(id: number, pieces: readonly Uint8Array[], fin: boolean): void {
    const entry = this.dataEntry(id);
    if (!entry) return;
    for (const piece of pieces) if (piece.byteLength > 0 && !entry.receiveData(piece)) return;
    if (fin) entry.receiveEnd();
  }

  /** The stream a DATA frame is for, once its receive side has taken the frame; null when there is none or it was refused. */
  private dataEntry(id: number): StreamEntry | null {
    const entry = this.lookup(id);
    if (!entry) return null;
    const refusal = refusalOf(RECV_MACHINE, entry.recv, RecvEvent.Data);
    if (refusal) {
      this.streamError(entry, refusal.code, refusal.message);
      return null;
    }
    entry.recv = advance(RECV_MACHINE, entry.recv, RecvEvent.Data, id);
    return entry;
  }

  onWindow(id: number, increment: number): void {
    const entry = this.lookup(id);
    if (!entry) return;
    if (entry.sendCredit + increment > 0x7fffffff) return this.streamError(entry, 'FLOW_CONTROL', 'window grew beyond 2^31-1');
    entry.sendCredit += increment;
    this.writer.schedule(entry);
  }

  onReset(id: number, wire: number, message: string): void {
    const entry = this.byId.get(id) ?? null;
    if (!entry) {
      this.lookup(id);
      return;
    }
    this.abort(entry);
    entry.stream.destroy(new TunnelError(codeFromWire(wire), `reset by peer: ${message}`, { remote: true }));
  }

  /** Finds the stream of a frame. Unknown ids of closed streams are ignored; ids never opened are a session error. */
  private lookup(id: number): StreamEntry | null {
    const entry = this.byId.get(id);
    if (entry) return entry;
    const ours = !this.peerParity(id);
    const everOpened = ours ? id < this.nextLocalId : id <= this.lastPeer;
    if (!everOpened) throw new TunnelError('PROTOCOL_ERROR', `frame for stream ${id}, which was never opened`);
    return null;
  }

  private peerParity(id: number): boolean {
    return this.clientSide ? id % 2 === 0 : id % 2 === 1;
  }
}
