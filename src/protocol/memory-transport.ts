/**
 * An in-memory pair of message transports, for tests and for running the protocol without sockets.
 * Messages are delivered asynchronously (a macrotask later) and in order. `bufferedAmount` counts
 * messages the receiver has not yet been handed, so backpressure behaves as on a real socket.
 */
import type { MessageTransport, TransportHandlers } from './transport.js';

class MemoryTransport implements MessageTransport {
  peer!: MemoryTransport;
  private handlers: TransportHandlers | null = null;
  private early: Uint8Array[] = [];
  private inFlight = 0;
  private isClosed = false;
  private highWater: number;
  private armed = false;

  constructor(highWater: number) {
    this.highWater = highWater;
  }

  start(handlers: TransportHandlers): void {
    this.handlers = handlers;
    const early = this.early;
    this.early = [];
    for (const m of early) handlers.message(m);
  }

  get bufferedAmount(): number {
    return this.inFlight;
  }

  get backpressured(): boolean {
    if (this.inFlight < this.highWater) return false;
    this.armed = true;
    return true;
  }

  send(data: Uint8Array): void {
    if (this.isClosed) return;
    const copy = Uint8Array.from(data);
    this.inFlight += copy.byteLength;
    setImmediate(() => {
      this.inFlight -= copy.byteLength;
      if (!this.peer.isClosed) this.peer.deliver(copy);
      if (this.armed && this.inFlight < this.highWater / 2 && !this.isClosed) {
        this.armed = false;
        this.handlers?.drain();
      }
    });
  }

  private deliver(data: Uint8Array): void {
    if (this.handlers) this.handlers.message(data);
    else this.early.push(data);
  }

  close(code: number, reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    // The peer sees the close after the messages already in flight, as on a socket.
    setImmediate(() => {
      this.handlers?.closed(code, reason);
      setImmediate(() => this.peer.remoteClosed(code, reason));
    });
  }

  private remoteClosed(code: number, reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.handlers?.closed(code, reason);
  }
}

/** Two connected transports: what one sends, the other receives. */
export function createMemoryTransportPair(highWater = 1024 * 1024): [MessageTransport, MessageTransport] {
  const a = new MemoryTransport(highWater);
  const b = new MemoryTransport(highWater);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
