/**
 * Adapts a `ws` WebSocket to the protocol's MessageTransport. Binary messages only: a text message
 * closes the connection with MALFORMED_FRAME. Backpressure comes from `bufferedAmount` (bytes queued
 * in ws and in the socket, frame headers included), signalled by a DrainSignal.
 * The programs get theirs from tunnel-websocket.ts, which sets the socket up the same way for all.
 */
import type { Socket } from 'node:net';
import type { RawData, WebSocket } from 'ws';
import { CLOSE_CODE_BASE, TUNNEL_ERROR_CODES } from '../protocol/errors.js';
import type { MessageTransport, TransportHandlers } from '../protocol/transport.js';
import { DrainSignal } from './drain-signal.js';
import { CLOSE_LINGER_MS, WsFrameWriter } from './ws-framing.js';

export interface WsTransportOptions {
  /** Queued bytes above which the transport reports backpressure. */
  highWater?: number;
  /**
   * The raw socket under the WebSocket, for corking the frames of one writer turn into one write,
   * and for writing two-part messages (raw DATA frames) without ws's copies.
   */
  socket?: Socket;
  /** Frames this side sends are masked (the client side, RFC 6455 5.3). Default: true for a WebSocket that dialled (has a url). */
  mask?: boolean;
}

function toBytes(data: RawData): Uint8Array {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return new Uint8Array(data);
}

export class WsTransport implements MessageTransport {
  private readonly ws: WebSocket;
  private readonly pressure: DrainSignal;
  private readonly socket: Socket | null;
  /** Writes two-part messages straight to the socket (when there is one). */
  private readonly frames: WsFrameWriter | null;
  private handlers: TransportHandlers | null = null;
  private early: Uint8Array[] = [];
  private closedCalled = false;
  private earlyClose: { code: number; reason: string } | null = null;

  constructor(ws: WebSocket, options: WsTransportOptions = {}) {
    this.ws = ws;
    this.pressure = new DrainSignal(() => ws.bufferedAmount, options.highWater ?? 1024 * 1024, () => this.handlers?.drain());
    this.socket = options.socket ?? null;
    this.frames = this.socket ? new WsFrameWriter(this.socket, options.mask ?? Boolean(ws.url), this.pressure.sent) : null;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary) {
        this.close(CLOSE_CODE_BASE + TUNNEL_ERROR_CODES.MALFORMED_FRAME.wire, 'text messages are not part of the protocol');
        return;
      }
      const bytes = toBytes(data);
      if (this.handlers) this.handlers.message(bytes);
      else this.early.push(bytes);
    });
    ws.on('error', () => {
      /* 'close' follows every error; the session learns of the loss there. */
    });
    ws.on('close', (code: number, reason: Buffer) => this.onClosed(code, reason.toString('utf8')));
  }

  start(handlers: TransportHandlers): void {
    this.handlers = handlers;
    const early = this.early;
    this.early = [];
    for (const m of early) handlers.message(m);
    if (this.earlyClose) this.onClosed(this.earlyClose.code, this.earlyClose.reason);
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  get backpressured(): boolean {
    return this.pressure.full;
  }

  send(data: Uint8Array): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(data, { binary: true, compress: false }, this.pressure.sent);
  }

  /**
   * One message of `header` + `payload`, framed by WsFrameWriter and written straight to the socket
   * (see there for the copies it saves). ws itself writes every frame synchronously to the same
   * socket, and with compression off never queues one, so frames written here and by ws.send keep
   * their order; what is written here counts in `bufferedAmount` (ws reads the socket's queue).
   * Without the socket, ws.send of the concatenation.
   */
  sendParts(header: Uint8Array, payload: readonly Uint8Array[], mayChange = false): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.frames) this.frames.writeParts(header, payload, mayChange);
    else this.ws.send(Buffer.concat([header, ...payload]), { binary: true, compress: false }, this.pressure.sent);
  }

  cork(): void {
    this.socket?.cork();
  }

  uncork(): void {
    this.socket?.uncork();
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === this.ws.CLOSED) return;
    if (this.ws.readyState === this.ws.CONNECTING) {
      this.ws.terminate();
      return;
    }
    this.ws.close(code, Buffer.from(reason).subarray(0, 120).toString());
    const ws = this.ws;
    setTimeout(() => ws.terminate(), CLOSE_LINGER_MS).unref();
  }

  private onClosed(code: number, reason: string): void {
    if (this.closedCalled) return;
    if (!this.handlers) {
      this.earlyClose = { code, reason };
      return;
    }
    this.closedCalled = true;
    this.handlers.closed(code, reason);
  }
}
