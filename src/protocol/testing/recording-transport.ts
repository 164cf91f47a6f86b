/**
 * Test support: a MessageTransport wrapper that decodes and records every frame a session sends, and
 * lets a test hand the session messages synchronously (as a socket delivering a burst would).
 */
import { decodeFrameV2, type Frame } from '../frames.js';
import type { MessageTransport, TransportHandlers } from '../transport.js';

export class RecordingTransport implements MessageTransport {
  /** Every frame sent through this transport, decoded, in order. */
  readonly sent: Frame[] = [];
  private readonly inner: MessageTransport;
  private readonly onSend: ((frame: Frame, index: number) => void) | null;
  private handlers: TransportHandlers | null = null;

  /** `onSend` runs after each frame is recorded and before it is handed to the inner transport. */
  constructor(inner: MessageTransport, onSend?: (frame: Frame, index: number) => void) {
    this.inner = inner;
    this.onSend = onSend ?? null;
  }

  start(handlers: TransportHandlers): void {
    this.handlers = handlers;
    this.inner.start(handlers);
  }

  send(data: Uint8Array): void {
    const frame = decodeFrameV2(data);
    this.sent.push(frame);
    this.onSend?.(frame, this.sent.length - 1);
    this.inner.send(data);
  }

  get bufferedAmount(): number {
    return this.inner.bufferedAmount;
  }

  get backpressured(): boolean {
    return this.inner.backpressured;
  }

  close(code: number, reason: string): void {
    this.inner.close(code, reason);
  }

  /** Delivers messages to the session at once, in one synchronous burst. */
  inject(...messages: Uint8Array[]): void {
    if (!this.handlers) throw new Error('the session has not started this transport yet');
    for (const m of messages) this.handlers.message(m);
  }
}
