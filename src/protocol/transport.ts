/**
 * The message transport a session runs on: an ordered, reliable channel of binary messages (a
 * WebSocket in production, an in-memory pair in tests). The session owns the transport once it has
 * called `start`; it is the only caller of `send` and `close`.
 */
export interface TransportHandlers {
  /** One whole message arrived. Called in order; never called after `close`. */
  message(data: Uint8Array): void;
  /**
   * One whole message that arrived in several pieces (views of the reads it spanned, in order,
   * `length` bytes together). A transport that has the pieces calls this instead of joining them
   * for `message`; the handler takes what it keeps as it would from `message`.
   */
  messageParts(pieces: readonly Uint8Array[], length: number): void;
  /** Queued bytes fell below the high-water mark after `backpressured` read true. */
  drain(): void;
  /** The channel is gone (closed by either side or failed). Called once. */
  closed(code: number, reason: string): void;
}

export interface MessageTransport {
  /** Registers the session's handlers; messages that arrived earlier are delivered now. Called once. */
  start(handlers: TransportHandlers): void;
  /** Queues one message. Never throws for a closed transport; the message is dropped. */
  send(data: Uint8Array): void;
  /**
   * Optional: queues one message made of `header` followed by the pieces of `payload`, without the
   * caller concatenating them (a WebSocket transport writes them with at most one copy). Same rules
   * as `send`. `mayChange`: the pieces are the transport's to change (a WebSocket client masks them
   * in place, without a copy); otherwise their bytes are left as they are.
   */
  sendParts?(header: Uint8Array, payload: readonly Uint8Array[], mayChange?: boolean): void;
  /** Bytes queued and not yet handed to the network. */
  readonly bufferedAmount: number;
  /**
   * True while more than the transport's high-water mark is queued. Once it has read true, the
   * transport calls `drain()` when the queue falls below the mark again (the writer waits for that).
   */
  readonly backpressured: boolean;
  /** Closes the channel with an application close code (1000, or 4000-4999) and a short reason. */
  close(code: number, reason: string): void;
  /** Optional batching: messages sent between cork and uncork may go out in one write. */
  cork?(): void;
  uncork?(): void;
}
