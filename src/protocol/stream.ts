/**
 * One logical stream of a session, as a Node Duplex. Writing honours the peer's credit (a write's
 * callback fires at once while at most one chunk of the stream waits in the session, otherwise once
 * its bytes were framed and handed to the transport); reading returns credit
 * to the peer as the consumer drains. Each direction ends on its own (`end()` sends END; the readable
 * side ends on the peer's END). `reset()` aborts both directions with a code.
 *
 * Ownership: the session creates streams and routes frames to them; users only read, write, end,
 * reply and reset. The stream keeps only what its user sees (id, heads); its bookkeeping (credit,
 * queues, the states of its two directions) belongs to the session, which the stream reaches
 * through its `StreamCore`. An 'error' listener is always attached by the session, so a peer's
 * RESET never crashes a process that forgot one; users observe failures with their own 'error' or
 * 'close' listeners, or `stream.pipeline`/`finished`.
 */
import { Duplex } from 'node:stream';
import { TunnelError, type TunnelErrorCode } from './errors.js';
import type { Head } from './frames.js';

/**
 * What a stream asks of its session: one object per stream, owned by the session (its entry in the
 * stream table). Not for users. Called on the event loop from the Duplex machinery.
 */
export interface StreamCore {
  /** Queues bytes to send; `done` runs once the session took them (see the class comment). */
  write(chunk: Buffer, done: (err?: Error | null) => void): void;
  /** Ends this side's direction; `done` runs once END is framed. */
  final(done: (err?: Error | null) => void): void;
  /** The reader wants more: hand over what arrived and return credit for it. */
  read(): void;
  /** The stream was destroyed (by its user or by the session); `err` is why. */
  destroyed(err: Error | null): void;
  /** Queues the head of an accepted stream, with optional first data and END. */
  reply(head: Head, data: Uint8Array | null, end: boolean): void;
  /** Takes the peer's whole data if its direction already ended; null otherwise. */
  takeWhole(): Buffer[] | null;
  /** Bytes queued in the session whose writes already completed (not in the Duplex's writableLength). */
  queued(): number;
}

export class TunnelStream extends Duplex {
  readonly id: number;
  /** True for streams this side opened; false for streams the peer opened. */
  readonly local: boolean;
  /** The head this side sent (OPEN for local streams, REPLY for accepted ones), once sent or queued. */
  ownHead: Head | null = null;
  /** The head the peer sent: its OPEN for accepted streams, its REPLY for local ones (null until it arrives). */
  peerHead: Head | null;
  /**
   * Set (before the first write) by a writer that hands its chunks over: once written, a chunk is
   * never read or reused by the writer, so the session may change its bytes where they lie. A
   * WebSocket client then masks the chunk in place instead of copying it into a new frame buffer.
   * Default false: chunks written are left as they are.
   */
  handsOverWrites = false;
  private readonly core: StreamCore;
  /** replyOf calls waiting for the peer's REPLY (null when none): settled by it or by the stream's end. */
  private replyWaiters: ReplyWaiter[] | null = null;

  constructor(core: StreamCore, id: number, local: boolean, peerHead: Head | null, highWaterMark: number) {
    super({ allowHalfOpen: true, readableHighWaterMark: 16 * 1024, writableHighWaterMark: highWaterMark, decodeStrings: true });
    this.core = core;
    this.id = id;
    this.local = local;
    this.peerHead = peerHead;
    this.on('error', () => {
      /* Observed through the user's own listeners; see the class comment. */
    });
  }

  /**
   * Sends this side's head of an accepted stream (for HTTP: status and headers), optionally with
   * the first data and the end of this direction, all in one frame when they fit. Writing without a
   * reply sends an empty head first.
   */
  reply(head: Head, options?: { data?: Uint8Array; end?: boolean }): void {
    if (this.local) throw new TunnelError('PROTOCOL_ERROR', 'reply() is for streams the peer opened');
    if (this.ownHead !== null) throw new TunnelError('PROTOCOL_ERROR', 'reply() was already called');
    this.core.reply(head, options?.data ?? null, options?.end ?? false);
    if (options?.end) this.end();
  }

  /**
   * The peer's whole data, when its direction has already ended and nothing of it was read yet:
   * takes it out of the stream (which then ends its readable side) and returns it; null otherwise,
   * and the stream is untouched. For a small answer that came in one frame this saves the
   * stream machinery of reading it piece by piece.
   */
  takeWhole(): Buffer[] | null {
    if (this.destroyed || this.readableLength > 0 || this.readableDidRead || this.readableFlowing !== null) return null;
    const whole = this.core.takeWhole();
    if (whole) this.resume();
    return whole;
  }

  /**
   * Bytes this side wrote that are still in this process: those the Duplex holds (`writableLength`,
   * which counts a write until its callback ran) and those queued in the session after their write
   * completed. What a stalled peer leaves behind on this side.
   */
  get bufferedLength(): number {
    return this.writableLength + this.core.queued();
  }

  /** Aborts the stream in both directions and tells the peer why. Safe to call more than once. */
  reset(code: TunnelErrorCode = 'CANCELLED', message = 'stream reset'): void {
    if (this.destroyed) return;
    this.destroy(new TunnelError(code, message));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.core.write(chunk, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    const buf = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this.core.write(buf, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.core.final(callback);
  }

  override _read(): void {
    this.core.read();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.core.destroyed(err);
    const waiters = this.replyWaiters;
    this.replyWaiters = null;
    if (waiters) {
      const reason = err ?? closedBeforeReply();
      for (const w of waiters) w.reject(reason);
    }
    callback(err);
  }

  /** For replyOf: `w` is settled by the peer's REPLY, or rejected when the stream ends first. */
  waitReply(w: ReplyWaiter): void {
    (this.replyWaiters ??= []).push(w);
  }

  /** The stream table: the peer's REPLY arrived (before 'reply' is emitted). */
  replied(head: Head): void {
    this.peerHead = head;
    const waiters = this.replyWaiters;
    this.replyWaiters = null;
    if (waiters) for (const w of waiters) w.resolve(head);
  }
}

interface ReplyWaiter {
  resolve(head: Head): void;
  reject(err: Error): void;
}

function closedBeforeReply(): TunnelError {
  return new TunnelError('CONNECTION_LOST', 'the stream closed before the reply');
}

/**
 * Resolves with the peer's REPLY head of a stream this side opened; rejects with the stream's error,
 * or CONNECTION_LOST when it closes first. Nothing stays registered on the stream either way.
 */
export function replyOf(stream: TunnelStream): Promise<Head> {
  if (stream.peerHead !== null && stream.local) return Promise.resolve(stream.peerHead);
  if (stream.destroyed) return Promise.reject(stream.errored ?? closedBeforeReply());
  // A waiter on the stream rather than three event listeners added and removed for every request.
  return new Promise((resolve, reject) => stream.waitReply({ resolve, reject }));
}

/**
 * Reads the peer's whole direction of a stream, at most `max` bytes: more is PROTOCOL_ERROR
 * (`the <what> is larger than <max> bytes`), found without reading further (the stream is paused);
 * a stream that closes before its end is CONNECTION_LOST. Takes a body that arrived whole without
 * copying it through the stream's buffers.
 */
export function readBounded(stream: TunnelStream, max: number, what: string): Promise<Buffer> {
  const tooLarge = () => new TunnelError('PROTOCOL_ERROR', `the ${what} is larger than ${max} bytes`);
  const whole = stream.takeWhole();
  if (whole) {
    const size = whole.reduce((n, c) => n + c.byteLength, 0);
    return size > max ? Promise.reject(tooLarge()) : Promise.resolve(Buffer.concat(whole, size));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > max) {
        stream.off('data', onData);
        stream.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    stream.on('data', onData);
    stream.once('end', () => resolve(Buffer.concat(chunks, size)));
    stream.once('error', reject);
    stream.once('close', () => reject(new TunnelError('CONNECTION_LOST', `the stream closed before the ${what} arrived`)));
  });
}
