/**
 * A stream as its session keeps it: the states of its two directions, send credit and the queue of
 * what is still to be framed, the receive window and what arrived but was not read. One entry per
 * stream, created and forgotten by the stream table; the TunnelStream its user holds reaches the
 * session only through this entry (as its StreamCore), and the writer asks it for frames (as a
 * FrameSource).
 *
 * Every move of a direction goes through the transition table (`advance`); a move the table does not
 * allow is a bug here and throws. Peer frames are checked against the table's refusals by the stream
 * table before they reach an entry.
 */
import { TunnelError, type TunnelErrorCode } from './errors.js';
import { SplitFrame, type FrameSource, type OutFrame, type WriteCallback } from './fair-writer.js';
import { FrameKind, HEAD_FRAME_BASE, encodeFrame, encodeHeadFrame, encodeRawDataHeader, type Head } from './frames.js';
import { ReceiveWindow } from './flow.js';
import { FRAME_OVERHEAD } from './limits.js';
import { RECV_MACHINE, RecvEvent, RecvState, SEND_MACHINE, SendEvent, SendState, advance } from './stream-states.js';
import { TunnelStream, type StreamCore } from './stream.js';
import type { StreamTable } from './stream-table.js';

/** Received payloads smaller than this are copied out of the message they came in. */
const COPY_BELOW = 16 * 1024;

/** Bytes queued for sending, with the write callback to run once they are framed (null: already run). */
export interface OutChunk {
  buf: Buffer;
  done: WriteCallback | null;
}

export class StreamEntry implements StreamCore, FrameSource {
  readonly id: number;
  /** True for streams this side opened. */
  readonly local: boolean;
  /** What the user holds. */
  readonly stream: TunnelStream;
  /** The receive side's window: credit the peer holds and when to return more. */
  readonly window: ReceiveWindow;
  /** This side's direction. */
  send: SendState = SendState.Idle;
  /** The peer's direction. */
  recv: RecvState;
  /** The table has forgotten the stream (both directions ended, or it was aborted): its frames are ignored. */
  retired = false;
  /** The stream waits in the table's pending-open queue for the peer's stream limit. */
  pending = false;
  inRing = false;
  /** Payload bytes this side may still send (the peer's grant). */
  sendCredit = 0;
  /** The head waiting to be framed (OPEN or REPLY), packed. */
  outHead: Uint8Array | null = null;
  out: OutChunk[] = [];
  outBytes = 0;
  /** The user ended this side's direction; END goes out after the queued bytes. */
  finQueued = false;
  finDone: WriteCallback | null = null;
  /** Payloads received and not yet handed to the reader. */
  recvQueue: Buffer[] = [];
  recvBytes = 0;
  endPushed = false;
  /** The reader asked for more and has not said stop (push() returning false). */
  wantsData = false;
  private readonly table: StreamTable;

  constructor(table: StreamTable, id: number, local: boolean, peerHead: Head | null) {
    this.table = table;
    this.id = id;
    this.local = local;
    this.recv = local ? RecvState.AwaitingHead : RecvState.Receiving;
    this.window = new ReceiveWindow(table.limits.initialWindow, table.tuning.maxWindow, table.now());
    this.stream = new TunnelStream(this, id, local, peerHead, table.tuning.chunkSize);
  }

  /** Both directions move to Aborted (the stream was reset, refused, or its session closed). */
  abortDirections(): void {
    this.send = advance(SEND_MACHINE, this.send, SendEvent.Abort, this.id);
    this.recv = advance(RECV_MACHINE, this.recv, RecvEvent.Abort, this.id);
  }

  // ---- StreamCore: calls from the user's Duplex ------------------------------------------

  write(chunk: Buffer, done: WriteCallback): void {
    const writer = this.table.writer;
    if (this.retired || this.table.host.state() === 'closed') {
      done(new TunnelError('SESSION_CLOSED', 'stream is closed'));
      return;
    }
    if (!this.local && this.stream.ownHead === null) this.queueHead({});
    if (chunk.byteLength === 0) {
      // Nothing to frame, so the writer would never reach this callback and the stream would stall.
      writer.defer(done);
      writer.flushCallbacksSoon();
      writer.schedule(this);
      return;
    }
    // While this stream has at most one chunk waiting and the peer's credit covers it, the write
    // completes at once: the caller can end the stream in the same turn, and its last data and END
    // then leave in one frame. Beyond that, completion waits for the writer, so a stream never
    // queues more than a chunk here; and a stream whose peer stopped reading (no credit) holds only
    // the one write it cannot complete, the Duplex's high-water mark stopping the writer behind it.
    const queued = this.outBytes + chunk.byteLength;
    if (queued <= this.table.tuning.chunkSize && queued <= this.sendCredit) {
      this.queueOut(chunk, null);
      writer.schedule(this);
      done();
      return;
    }
    this.queueOut(chunk, done);
    writer.schedule(this);
  }

  final(done: WriteCallback): void {
    if (this.retired || this.table.host.state() === 'closed') {
      done(new TunnelError('SESSION_CLOSED', 'stream is closed'));
      return;
    }
    if (!this.local && this.stream.ownHead === null) this.queueHead({});
    this.finQueued = true;
    if (this.send === SendState.Ended) {
      done();
      return;
    }
    this.finDone = done;
    this.table.writer.schedule(this);
  }

  reply(head: Head, data: Uint8Array | null, end: boolean): void {
    if (this.retired || this.table.host.state() === 'closed') throw new TunnelError('SESSION_CLOSED', 'stream is closed');
    this.queueHead(head);
    if (data && data.byteLength > 0) this.queueOut(Buffer.from(data.buffer, data.byteOffset, data.byteLength), null);
    if (end) this.finQueued = true;
    this.table.writer.schedule(this);
  }

  read(): void {
    this.wantsData = true;
    this.deliver();
  }

  takeWhole(): Buffer[] | null {
    if (this.recv !== RecvState.Ended) return null;
    const whole = this.recvQueue;
    this.recvQueue = [];
    if (this.recvBytes > 0) this.table.budget.release(this.recvBytes);
    this.recvBytes = 0;
    this.pushEnd();
    return whole;
  }

  queued(): number {
    let n = 0;
    for (const c of this.out) if (c.done === null) n += c.buf.byteLength;
    return n;
  }

  destroyed(err: Error | null): void {
    const writer = this.table.writer;
    if (this.recvBytes > 0) {
      this.table.budget.release(this.recvBytes);
      this.recvBytes = 0;
      this.recvQueue.length = 0;
    }
    // The error for pending callbacks is made only when there are some: a clean end has none, and
    // capturing a stack for every finished stream was measurable at thousands of requests a second.
    let failure: Error | null = err;
    const fail = () => (failure ??= new TunnelError('CANCELLED', 'stream destroyed'));
    for (const c of this.out) if (c.done) writer.defer(() => c.done!(fail()));
    this.out.length = 0;
    this.outBytes = 0;
    if (this.finDone) {
      const fd = this.finDone;
      this.finDone = null;
      writer.defer(() => fd(fail()));
    }
    writer.flushCallbacksSoon();
    if (this.pending) {
      this.table.dropPending(this);
      return;
    }
    if (this.retired) return;
    const cleanlyDone = this.send === SendState.Ended && this.recv === RecvState.Ended;
    // A stream whose OPEN never went out is unknown to the peer, which would take a RESET for it as a
    // frame for a never-opened id and close the whole session. Its id is simply skipped.
    const peerKnowsIt = !this.local || this.send !== SendState.Idle;
    if (!cleanlyDone && peerKnowsIt && this.table.host.state() !== 'closed') {
      const code: TunnelErrorCode = err instanceof TunnelError && !err.remote ? err.code : 'CANCELLED';
      this.table.sendReset(this.id, code, err?.message ?? 'stream cancelled');
    }
    this.table.abort(this);
  }

  // ---- receiving (the stream table checked the frame against the table's refusals) -------

  /** Buffers a payload within the window and the budgets; false when the stream was reset for it. */
  receiveData(data: Uint8Array): boolean {
    const n = data.byteLength;
    if (!this.window.received(n)) {
      this.table.streamError(this, 'FLOW_CONTROL', `peer sent ${n} bytes with ${this.window.outstanding} bytes of credit`);
      return false;
    }
    if (!this.table.budget.tryReserve(n)) {
      this.table.streamError(this, 'BUFFER_LIMIT', 'receive buffers are full');
      return false;
    }
    // The payload is a view into the received message. A large one is most of its message (big
    // messages arrive in buffers of their own), so it is kept as is: copying it cost about an eighth
    // of kas's CPU in bulk transfers. A small one may be a view into a larger read buffer that it
    // would keep alive, so it is copied.
    const buf = n >= COPY_BELOW ? Buffer.from(data.buffer, data.byteOffset, n) : Buffer.from(data);
    this.recvQueue.push(buf);
    this.recvBytes += n;
    if (this.wantsData) this.deliver();
    return true;
  }

  /** The peer's END. A stream its reader destroyed while the frame's data was handed over ignores it. */
  receiveEnd(): void {
    if (this.retired) return;
    this.recv = advance(RECV_MACHINE, this.recv, RecvEvent.End, this.id);
    if (this.wantsData || this.recvQueue.length === 0) this.deliver();
    this.table.maybeRetire(this);
  }

  /** Hands what arrived to the reader while it wants more, and returns credit for what it took. */
  private deliver(): void {
    let consumed = 0;
    while (this.wantsData && this.recvQueue.length > 0) {
      const buf = this.recvQueue.shift()!;
      this.recvBytes -= buf.byteLength;
      consumed += buf.byteLength;
      this.wantsData = this.stream.push(buf);
    }
    const table = this.table;
    if (consumed > 0) {
      table.budget.release(consumed);
      if (this.recv !== RecvState.Ended && !this.retired && table.host.state() !== 'closed') {
        const mayGrow = table.budget.headroom() > 0.5;
        // The RTT is asked for only when the window could grow: the first ask sends a probe (Keepalive.rttForGrowth).
        const rtt = this.window.mayGrowOn(consumed, mayGrow) ? table.host.rttForGrowth() : null;
        const increment = this.window.consumed(consumed, table.now(), rtt, mayGrow);
        if (increment > 0) table.writer.sendControl(encodeFrame({ kind: FrameKind.WINDOW, id: this.id, increment }));
      }
    }
    if (this.recv === RecvState.Ended && this.recvQueue.length === 0) this.pushEnd();
  }

  /** Ends the stream's readable side, once. */
  private pushEnd(): void {
    if (this.endPushed) return;
    this.endPushed = true;
    this.stream.push(null);
  }

  // ---- sending -----------------------------------------------------------------------------

  /** Queues the REPLY head of an accepted stream, refusing one larger than either side allows. */
  queueHead(head: Head): void {
    this.setHead(head, this.table.checkHead(head, 'reply'));
  }

  /** Queues this side's head (OPEN or REPLY), packed and measured by the table's checkHead. */
  setHead(head: Head, packed: Uint8Array): void {
    this.stream.ownHead = head;
    this.outHead = packed;
  }

  queueOut(buf: Buffer, done: WriteCallback | null): void {
    this.out.push({ buf, done });
    this.outBytes += buf.byteLength;
  }

  hasFrame(): boolean {
    if (this.pending || this.retired) return false;
    if (this.outHead !== null) return true;
    if (this.send === SendState.Idle) return false;
    if (this.outBytes > 0) return this.sendCredit > 0;
    return this.finQueued && this.send !== SendState.Ended;
  }

  /** The next frame: the head (with what data fits), or one chunk, or a bare END. */
  nextFrame(chunkLimit: number, maxFrameSize: number): OutFrame | null {
    if (this.retired) return null;
    if (this.outHead !== null) {
      const head = this.outHead;
      this.outHead = null;
      const room = Math.min(chunkLimit, maxFrameSize - head.byteLength - HEAD_FRAME_BASE - FRAME_OVERHEAD);
      const data = room > 0 ? this.takeOut(Math.min(room, this.sendCredit)) : null;
      const fin = this.finQueued && this.outBytes === 0;
      this.send = advance(SEND_MACHINE, this.send, fin ? SendEvent.HeadEnd : SendEvent.Head, this.id);
      if (fin) this.ended();
      return encodeHeadFrame(this.local ? FrameKind.OPEN : FrameKind.REPLY, this.id, head, data, fin);
    }
    if (this.outBytes > 0) {
      // Version 2: the payload goes out as is, in the pieces it was written in, behind a small
      // header (no msgpack copy, no concatenation).
      const raw = this.table.rawData;
      const data = raw ? this.takePieces(Math.min(chunkLimit, this.sendCredit)) : this.takeOut(Math.min(chunkLimit, this.sendCredit));
      if (!data) return null;
      const fin = this.finQueued && this.outBytes === 0;
      this.send = advance(SEND_MACHINE, this.send, fin ? SendEvent.End : SendEvent.Data, this.id);
      if (fin) this.ended();
      if (raw) return new SplitFrame(encodeRawDataHeader(this.id, fin), data as Buffer[], this.stream.handsOverWrites);
      return encodeFrame({ kind: FrameKind.DATA, id: this.id, data: data as Buffer, fin });
    }
    if (this.finQueued && this.send !== SendState.Ended) {
      this.send = advance(SEND_MACHINE, this.send, SendEvent.End, this.id);
      this.ended();
      if (this.table.rawData) return encodeRawDataHeader(this.id, true);
      return encodeFrame({ kind: FrameKind.DATA, id: this.id, data: new Uint8Array(0), fin: true });
    }
    return null;
  }

  /** This side's END is framed: the user's end() completes, and the stream may be done. */
  private ended(): void {
    if (this.finDone) {
      const fd = this.finDone;
      this.finDone = null;
      this.table.writer.defer(fd);
    }
    this.table.maybeRetire(this);
  }

  /** Takes up to n bytes from the queue (concatenating small writes), spending credit. */
  private takeOut(n: number): Buffer | null {
    const pieces = this.takePieces(n);
    if (!pieces) return null;
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }

  /** Takes up to n bytes from the queue as the pieces they were written in, spending credit. */
  private takePieces(n: number): Buffer[] | null {
    if (n <= 0 || this.outBytes === 0) return null;
    const pieces: Buffer[] = [];
    let taken = 0;
    while (taken < n && this.out.length > 0) {
      const c = this.out[0]!;
      const want = n - taken;
      if (c.buf.byteLength <= want) {
        pieces.push(c.buf);
        taken += c.buf.byteLength;
        this.out.shift();
        if (c.done) this.table.writer.defer(c.done);
      } else {
        pieces.push(c.buf.subarray(0, want));
        c.buf = c.buf.subarray(want);
        taken += want;
      }
    }
    this.outBytes -= taken;
    this.sendCredit -= taken;
    return pieces;
  }
}
