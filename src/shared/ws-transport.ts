/**
 * Adapts a `ws` WebSocket to the protocol's MessageTransport. Binary messages only: a text message
 * closes the connection with MALFORMED_FRAME. Backpressure comes from `bufferedAmount` (bytes queued
 * in ws and in the socket, frame headers included). Every send carries a completion callback; once
 * `backpressured` has read true, the first completion that finds the queue below the high-water
 * mark calls `drain`, so the writer can never be left waiting with nothing armed to wake it.
 * The programs get theirs from tunnel-websocket.ts, which sets the socket up the same way for all.
 */
import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { RawData, WebSocket } from 'ws';
import { CLOSE_CODE_BASE, TUNNEL_ERROR_CODES } from '../protocol/errors.js';
import type { MessageTransport, TransportHandlers } from '../protocol/transport.js';

/** How long a closing WebSocket may wait for the peer's close frame before the socket is destroyed. */
const CLOSE_LINGER_MS = 5000;

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

type MaskFn = (source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number) => void;

/** XORs `source` with the 4-byte `mask` into `output` at `offset`: bufferutil's native loop when it loads (as ws does). */
const maskInto: MaskFn = (() => {
  try {
    const lib = createRequire(import.meta.url)('bufferutil') as { mask: MaskFn };
    return (source, mask, output, offset, length) => {
      if (length < 32) jsMask(source, mask, output, offset, length);
      else lib.mask(source, mask, output, offset, length);
    };
  } catch {
    return jsMask;
  }
})();

function jsMask(source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number): void {
  for (let i = 0; i < length; i++) output[offset + i] = source[i]! ^ mask[i & 3]!;
}

/** Masking keys come from a pool of random bytes, refilled from the CSPRNG (as ws does). */
const MASK_POOL_SIZE = 8 * 1024;
let maskPool: Buffer | null = null;
let maskPoolAt = MASK_POOL_SIZE;

/** The next masking key, into `key` (4 bytes), byte by byte: a Buffer.copy of 4 bytes costs more. */
function nextMaskKey(key: Buffer): void {
  if (maskPoolAt === MASK_POOL_SIZE) {
    maskPool ??= Buffer.alloc(MASK_POOL_SIZE);
    randomFillSync(maskPool, 0, MASK_POOL_SIZE);
    maskPoolAt = 0;
  }
  const pool = maskPool!;
  key[0] = pool[maskPoolAt]!;
  key[1] = pool[maskPoolAt + 1]!;
  key[2] = pool[maskPoolAt + 2]!;
  key[3] = pool[maskPoolAt + 3]!;
  maskPoolAt += 4;
}

/** `key` as it continues at `shift` bytes past a multiple of 4, into `out` (4 bytes); `key` itself when shift is 0. */
function rotatedKey(key: Buffer, shift: number, out: Buffer): Buffer {
  if (shift === 0) return key;
  for (let i = 0; i < 4; i++) out[i] = key[(shift + i) & 3]!;
  return out;
}

/**
 * Writes a WebSocket frame header (FIN, binary opcode, payload length, mask bit) for a payload of
 * `length` bytes into `out`; returns the offset where the masking key (if masked) or the payload starts.
 */
function writeFrameHeader(out: Buffer, length: number, masked: boolean): number {
  out[0] = 0x82;
  const maskBit = masked ? 0x80 : 0;
  if (length < 126) {
    out[1] = maskBit | length;
    return 2;
  }
  if (length < 65536) {
    out[1] = maskBit | 126;
    out.writeUInt16BE(length, 2);
    return 4;
  }
  out[1] = maskBit | 127;
  out.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
  out.writeUInt32BE(length >>> 0, 6);
  return 10;
}

function frameHeaderSize(length: number): number {
  return length < 126 ? 2 : length < 65536 ? 4 : 10;
}

function toBytes(data: RawData): Uint8Array {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return new Uint8Array(data);
}

export class WsTransport implements MessageTransport {
  private readonly ws: WebSocket;
  private readonly highWater: number;
  private readonly socket: Socket | null;
  private readonly mask: boolean;
  /** This frame's masking key, and the key rotated for a part that starts off a multiple of 4 (reused: no allocation per frame). */
  private readonly maskKey = Buffer.alloc(4);
  private readonly shiftedKey = Buffer.alloc(4);
  private handlers: TransportHandlers | null = null;
  private early: Uint8Array[] = [];
  private armed = false;
  private closedCalled = false;
  private earlyClose: { code: number; reason: string } | null = null;

  constructor(ws: WebSocket, options: WsTransportOptions = {}) {
    this.ws = ws;
    this.highWater = options.highWater ?? 1024 * 1024;
    this.socket = options.socket ?? null;
    this.mask = options.mask ?? Boolean(ws.url);
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
    if (this.ws.bufferedAmount < this.highWater) return false;
    this.armed = true;
    return true;
  }

  send(data: Uint8Array): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(data, { binary: true, compress: false }, this.sent);
  }

  /**
   * One message of `header` + `payload`, framed here and written straight to the socket: a server
   * (unmasked) writes the frame header and our header in one small buffer and the payload as it is
   * (no copy). A client masks: with `mayChange` (the pieces were handed over) it masks them where
   * they lie and writes them behind a small buffer holding the frame header, the key and our masked
   * header (no copy); otherwise it writes one buffer with the payload masked into it (one copy,
   * where ws.send would have needed the caller's concatenation and then its own masked copy). ws
   * itself writes every frame synchronously to the same socket, and with compression off never
   * queues one, so frames written here and by ws.send keep their order; what is written here counts
   * in `bufferedAmount` (ws reads the socket's queue). Without the socket, ws.send of the
   * concatenation.
   */
  sendParts(header: Uint8Array, payload: readonly Uint8Array[], mayChange = false): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    const socket = this.socket;
    let length = header.byteLength;
    for (const piece of payload) length += piece.byteLength;
    if (!socket) {
      this.ws.send(Buffer.concat([header, ...payload], length), { binary: true, compress: false }, this.sent);
      return;
    }
    const headSize = frameHeaderSize(length);
    if (this.mask) {
      const inPlace = mayChange && payload.length > 0;
      const out = Buffer.allocUnsafe(headSize + 4 + (inPlace ? header.byteLength : length));
      const keyAt = writeFrameHeader(out, length, true);
      const key = this.maskKey;
      nextMaskKey(key);
      out[keyAt] = key[0]!;
      out[keyAt + 1] = key[1]!;
      out[keyAt + 2] = key[2]!;
      out[keyAt + 3] = key[3]!;
      const start = keyAt + 4;
      maskInto(header, key, out, start, header.byteLength);
      let at = header.byteLength;
      for (const part of payload) {
        // The key restarts at each part; a part that starts off a multiple of 4 gets it rotated.
        const k = rotatedKey(key, at & 3, this.shiftedKey);
        if (inPlace) maskInto(part, k, part, 0, part.byteLength);
        else maskInto(part, k, out, start + at, part.byteLength);
        at += part.byteLength;
      }
      if (!inPlace) {
        socket.write(out, this.sent);
        return;
      }
      this.writeAll(socket, out, payload);
      return;
    }
    const out = Buffer.allocUnsafe(headSize + header.byteLength);
    const start = writeFrameHeader(out, length, false);
    out.set(header, start);
    if (payload.length === 0) socket.write(out, this.sent);
    else this.writeAll(socket, out, payload);
  }

  /** Writes `first` and the pieces in one corked batch; the last write carries the completion callback. */
  private writeAll(socket: Socket, first: Buffer, pieces: readonly Uint8Array[]): void {
    socket.cork();
    socket.write(first);
    for (let i = 0; i < pieces.length - 1; i++) socket.write(pieces[i]!);
    socket.write(pieces[pieces.length - 1]!, this.sent);
    socket.uncork();
  }

  private readonly sent = (): void => {
    if (this.armed && this.ws.bufferedAmount < this.highWater) {
      this.armed = false;
      this.handlers?.drain();
    }
  };

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
