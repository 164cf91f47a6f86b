/**
 * The one writer of a session (docs/protocol.md, "Scheduling"): control frames first, in the order
 * they were produced and regardless of backpressure; then one frame per ready stream in turn (a
 * round-robin ring) while the transport takes more. It decides who sends next and when; what a
 * stream's next frame is, the stream decides (`FrameSource.nextFrame`).
 *
 * Write callbacks of streams run after the writer's loop (`defer`), so user code never re-enters it.
 * The writer runs at most once per microtask unless the transport's drain or a close runs it at once.
 */
import { TunnelError } from './errors.js';
import { FrameKind, encodeFrame } from './frames.js';
import { FRAME_OVERHEAD, type SessionTuning } from './limits.js';
import type { MessageTransport } from './transport.js';

/** A frame in parts (a raw DATA header and its payload's pieces) that go out as one message. */
export class SplitFrame {
  constructor(
    readonly header: Uint8Array,
    readonly payload: readonly Uint8Array[],
    /** The payload's pieces were handed over by their writer: the transport may change them in place. */
    readonly handedOver = false,
  ) {}
}

/** A frame as a source hands it to the writer. */
export type OutFrame = Uint8Array | SplitFrame;

/** A stream as the writer sees it. Implemented by the stream table's entries. */
export interface FrameSource {
  /** Owned by the writer: true while the source waits in its ring. */
  inRing: boolean;
  /** True when the source has a frame to send now (and may send at all). */
  hasFrame(): boolean;
  /**
   * Builds the source's next frame, at most `chunkLimit` payload bytes and `maxFrameSize` bytes in
   * all; null when it has nothing after all.
   */
  nextFrame(chunkLimit: number, maxFrameSize: number): OutFrame | null;
}

/** What the writer needs from its session. */
export interface WriterHost {
  /** The peer does not read: the session must close with `err`. */
  fail(err: TunnelError): void;
}

export type WriteCallback = (err?: Error | null) => void;

export class FairWriter {
  private readonly transport: MessageTransport;
  private readonly tuning: Readonly<SessionTuning>;
  private readonly host: WriterHost;
  private readonly control: Uint8Array[] = [];
  private readonly ring: FrameSource[] = [];
  private readonly doneCallbacks: Array<() => void> = [];
  private pumpScheduled = false;
  /** True from a write made during the event loop's I/O until its check phase (see schedulePump). */
  private coalescing = false;
  private lateScheduled = false;
  private pongDue: number | null = null;
  /** The peer's maxFrameSize; 0 until the handshake is done, and only control frames go out till then. */
  private peerMaxFrameSize = 0;
  private stopped = false;

  constructor(transport: MessageTransport, tuning: Readonly<SessionTuning>, host: WriterHost) {
    this.transport = transport;
    this.tuning = tuning;
    this.host = host;
  }

  /** The handshake is done: stream frames may go out, within the peer's frame size. */
  start(peerMaxFrameSize: number): void {
    this.peerMaxFrameSize = peerMaxFrameSize;
  }

  /** The session closed: nothing more goes out, and what was queued is dropped. */
  stop(): void {
    this.stopped = true;
    this.control.length = 0;
    this.ring.length = 0;
  }

  /** Queues a control frame; closes the session (BUFFER_LIMIT) when the peer has stopped reading. */
  sendControl(frame: Uint8Array): void {
    if (this.stopped) return;
    this.control.push(frame);
    if (this.transport.bufferedAmount > this.tuning.maxTransportBacklog) {
      this.host.fail(new TunnelError('BUFFER_LIMIT', `peer does not read: more than ${this.tuning.maxTransportBacklog} bytes queued for it`));
      return;
    }
    this.schedulePump(true);
  }

  /** Answers a PING: several that arrive before the writer runs get one PONG, for the latest. */
  answerPing(nonce: number): void {
    this.pongDue = nonce;
    this.schedulePump(true);
  }

  /** Puts a source in the ring if it has something to send, and makes sure the writer runs. */
  schedule(source: FrameSource): void {
    if (!source.inRing && source.hasFrame()) {
      source.inRing = true;
      this.ring.push(source);
    }
    this.schedulePump(false);
  }

  /** Runs `cb` after the writer's current turn (or soon, when no turn is under way). */
  defer(cb: () => void): void {
    this.doneCallbacks.push(cb);
  }

  /**
   * Sends control frames, then one bounded chunk per ready stream in turn, while the transport takes
   * more. Returns whether it sent anything.
   */
  pump(): boolean {
    if (this.stopped) return false;
    const t = this.transport;
    if (this.pongDue !== null) {
      this.control.push(encodeFrame({ kind: FrameKind.PONG, nonce: this.pongDue }));
      this.pongDue = null;
    }
    let sent = this.control.length > 0;
    t.cork?.();
    try {
      for (const frame of this.control) t.send(frame);
      this.control.length = 0;
      const peerMax = this.peerMaxFrameSize;
      if (peerMax === 0) return sent;
      const chunkLimit = Math.min(this.tuning.chunkSize, peerMax - FRAME_OVERHEAD);
      while (this.ring.length > 0 && !t.backpressured) {
        const s = this.ring.shift()!;
        s.inRing = false;
        const frame = s.nextFrame(chunkLimit, peerMax);
        if (frame) sent = true;
        if (frame instanceof SplitFrame) {
          if (t.sendParts) t.sendParts(frame.header, frame.payload, frame.handedOver);
          else t.send(Buffer.concat([frame.header, ...frame.payload]));
        } else if (frame) {
          t.send(frame);
        }
        if (s.hasFrame()) {
          s.inRing = true;
          this.ring.push(s);
        }
      }
    } finally {
      t.uncork?.();
    }
    this.flushCallbacks();
    return sent;
  }

  /** Runs the callbacks deferred so far (and those they defer in turn). */
  flushCallbacks(): void {
    while (this.doneCallbacks.length > 0) {
      const cbs = this.doneCallbacks.splice(0);
      for (const cb of cbs) cb();
    }
  }

  /** Runs the deferred callbacks in a microtask, when there are any. */
  flushCallbacksSoon(): void {
    if (this.doneCallbacks.length > 0) queueMicrotask(() => this.flushCallbacks());
  }

  /**
   * The writer runs in a microtask, right after the event that gave it work, unless it already sent
   * during this turn of the event loop's I/O and the work is stream frames: then it runs once more
   * after that I/O (setImmediate) and sends what the turn's later events queued, together. Many
   * requests arriving in one turn (one per client connection) go out in one write, not one write
   * each, and the first still goes at once; a lone request is never delayed. Control frames
   * (`urgent`: RESET, WINDOW, PONG, GOAWAY) always go in the microtask.
   */
  private schedulePump(urgent: boolean): void {
    if (this.coalescing && !urgent) {
      if (!this.lateScheduled && !this.pumpScheduled) {
        this.lateScheduled = true;
        setImmediate(this.lateTurn);
      }
      return;
    }
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(this.firstTurn);
  }

  private readonly firstTurn = (): void => {
    this.pumpScheduled = false;
    if (this.pump() && !this.coalescing) {
      this.coalescing = true;
      // Scheduled before any lateTurn of this turn, so it runs first: the next turn starts afresh.
      setImmediate(this.endCoalescing);
    }
  };

  private readonly lateTurn = (): void => {
    this.lateScheduled = false;
    this.pump();
  };

  private readonly endCoalescing = (): void => {
    this.coalescing = false;
  };
}
