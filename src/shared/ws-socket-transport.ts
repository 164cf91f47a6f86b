/**
 * The accepting side's MessageTransport: RFC 6455 spoken directly on the upgraded socket, without a
 * `ws` WebSocket. Frames are read by WsFrameReader, so a message that spans socket reads reaches the
 * session as the pieces it came in (no joining copy: in bulk transfers nearly every 64 KiB frame
 * spans two reads, and the copies, with the garbage collections their memory triggered, cost kas
 * about a third of its CPU). Frames are written by WsFrameWriter, unmasked.
 *
 * Same contract as WsTransport: binary messages only (a text message closes with MALFORMED_FRAME),
 * backpressure from the socket's queue with a completion callback on every write, pings answered,
 * the close handshake (our close frame, the peer's echo, then the socket ends; destroyed when the
 * peer does not answer within CLOSE_LINGER_MS). A protocol error of the peer is answered with a
 * close frame carrying 1002, 1007 or 1009, as `ws` does.
 */
import type { Socket } from 'node:net';
import { CLOSE_CODE_BASE, TUNNEL_ERROR_CODES } from '../protocol/errors.js';
import type { MessageTransport, TransportHandlers } from '../protocol/transport.js';
import { DrainSignal } from './drain-signal.js';
import { CLOSE_LINGER_MS, Opcode, WsFrameReader, WsFrameWriter } from './ws-framing.js';

/** RFC 6455: the peer ended without a close frame. */
const CLOSE_ABNORMAL = 1006;

const EMPTY = Buffer.alloc(0);

export interface SocketWsTransportOptions {
  /** Queued bytes above which the transport reports backpressure. */
  highWater: number;
  /** Largest message accepted (all fragments together); a longer one is refused with 1009. */
  maxPayload: number;
}

function closePayload(code: number, reason: string): Buffer {
  const text = Buffer.from(reason).subarray(0, 120);
  const out = Buffer.allocUnsafe(2 + text.byteLength);
  out.writeUInt16BE(code, 0);
  out.set(text, 2);
  return out;
}

export class SocketWsTransport implements MessageTransport {
  private readonly socket: Socket;
  private readonly highWater: number;
  private readonly pressure: DrainSignal;
  private readonly frames: WsFrameWriter;
  private readonly reader: WsFrameReader;
  private handlers: TransportHandlers | null = null;
  /** Messages that arrived before `start` (the session starts the transport as soon as it is made). */
  private early: Uint8Array[] = [];
  private closeSent = false;
  /** The code and reason the session is told at the end: the peer's close frame, or our answer to its protocol error. */
  private ending: { code: number; reason: string } | null = null;
  private socketClosed = false;
  private closedCalled = false;
  private linger: NodeJS.Timeout | null = null;

  /** `socket`: upgraded, the 101 answer written; `head`: bytes that came after the upgrade request. */
  constructor(socket: Socket, head: Buffer, options: SocketWsTransportOptions) {
    this.socket = socket;
    this.highWater = options.highWater;
    this.pressure = new DrainSignal(() => socket.writableLength, options.highWater, () => this.handlers?.drain());
    socket.setTimeout(0);
    socket.setNoDelay(true);
    this.frames = new WsFrameWriter(socket, false, this.pressure.sent);
    this.reader = new WsFrameReader(true, options.maxPayload, {
      message: (pieces, length, binary) => this.onMessage(pieces, length, binary),
      ping: (payload) => {
        // A peer that pings and never reads gets no more answers once our queue is full.
        if (!this.closeSent && socket.writableLength < this.highWater) this.frames.writeControl(Opcode.PONG, payload);
      },
      pong: () => undefined,
      close: (code, reason) => this.onCloseFrame(code, reason),
      error: (code, message) => this.onProtocolError(code, message),
    });
    socket.on('error', () => {
      /* 'close' follows every error; the session learns of the loss there. */
    });
    // The peer finished sending without a close frame: finish ours, 'close' follows.
    socket.on('end', () => socket.end());
    socket.once('close', () => this.onSocketClosed());
    if (head.byteLength > 0) this.reader.push(head);
    socket.on('data', (chunk: Buffer) => this.reader.push(chunk));
  }

  start(handlers: TransportHandlers): void {
    this.handlers = handlers;
    const early = this.early;
    this.early = [];
    for (const m of early) handlers.message(m);
    if (this.socketClosed) this.reportClosed();
  }

  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  get backpressured(): boolean {
    return this.pressure.full;
  }

  send(data: Uint8Array): void {
    if (this.closeSent || this.socket.destroyed) return;
    this.frames.writeParts(EMPTY, [data], false);
  }

  sendParts(header: Uint8Array, payload: readonly Uint8Array[]): void {
    if (this.closeSent || this.socket.destroyed) return;
    this.frames.writeParts(header, payload, false);
  }

  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  close(code: number, reason: string): void {
    if (this.socketClosed) return;
    this.sendClose(code, reason);
    if (this.ending) this.socket.end();
    this.lingerThenDestroy();
  }

  private sendClose(code: number, reason: string): void {
    if (this.closeSent) return;
    this.closeSent = true;
    if (!this.socket.destroyed) this.frames.writeControl(Opcode.CLOSE, code === 1005 ? EMPTY : closePayload(code, reason));
  }

  private lingerThenDestroy(): void {
    if (this.linger) return;
    const socket = this.socket;
    this.linger = setTimeout(() => socket.destroy(), CLOSE_LINGER_MS);
    this.linger.unref();
  }

  private onMessage(pieces: Buffer[], length: number, binary: boolean): void {
    // After our close frame nothing more is delivered (the peer may still send until it sees it).
    if (this.closeSent) return;
    if (!binary) {
      this.close(CLOSE_CODE_BASE + TUNNEL_ERROR_CODES.MALFORMED_FRAME.wire, 'text messages are not part of the protocol');
      return;
    }
    if (!this.handlers) this.early.push(Buffer.concat(pieces, length));
    else if (pieces.length <= 1) this.handlers.message(pieces[0] ?? EMPTY);
    else this.handlers.messageParts(pieces, length);
  }

  /** The peer's close frame: echo its code (when we have not closed already), then end the socket: the accepting side ends TCP first. */
  private onCloseFrame(code: number, reason: string): void {
    this.ending = { code, reason };
    this.sendClose(code, '');
    this.socket.end();
    this.lingerThenDestroy();
  }

  private onProtocolError(code: number, message: string): void {
    this.ending = { code, reason: message };
    this.sendClose(code, '');
    this.socket.end();
    this.lingerThenDestroy();
  }

  private onSocketClosed(): void {
    this.socketClosed = true;
    if (this.linger) clearTimeout(this.linger);
    if (this.handlers) this.reportClosed();
  }

  private reportClosed(): void {
    if (this.closedCalled) return;
    this.closedCalled = true;
    const ending = this.ending ?? { code: CLOSE_ABNORMAL, reason: '' };
    this.handlers!.closed(ending.code, ending.reason);
  }
}
