/**
 * RFC 6455 framing on a raw socket, for the transports that write (and, on the accepting side, read)
 * WebSocket frames themselves instead of going through `ws`:
 * - masking helpers (bufferutil's native loop when it loads, as ws does; keys from a CSPRNG pool);
 * - `WsFrameWriter`: binary messages from a header and payload pieces with at most one copy, and
 *   control frames;
 * - `WsFrameReader`: parses frames from socket reads without joining them: a message is handed over
 *   as the pieces of the reads it arrived in (unmasked in place), so a frame that spans two reads is
 *   not copied into a buffer of its own. Binary only on the wire of this project, but it parses every
 *   frame type of RFC 6455 (without extensions: a set RSV bit is an error).
 */
import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

type MaskFn = (source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number) => void;

/** XORs `source` with the 4-byte `mask` into `output` at `offset`: bufferutil's native loop when it loads (as ws does). */
export const maskInto: MaskFn = (() => {
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
function nextMaskKey(key: Uint8Array): void {
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

/**
 * Scratch space for masking keys, shared by every reader and writer: a key is only used within one
 * synchronous call (a reader keeps its frame's key as a number between reads). A kas holds one
 * connection per agent, and four 4-byte Buffers each cost more than the rest of its framing state.
 */
const KEY = Buffer.alloc(4);
const SHIFTED_KEY = Buffer.alloc(4);

/** `key` as it continues at `shift` bytes past a multiple of 4, into `out` (4 bytes); `key` itself when shift is 0. */
function rotatedKey(key: Uint8Array, shift: number, out: Uint8Array): Uint8Array {
  if (shift === 0) return key;
  for (let i = 0; i < 4; i++) out[i] = key[(shift + i) & 3]!;
  return out;
}

/** How long a closing WebSocket may wait for the peer's close frame before its socket is destroyed (both transports). */
export const CLOSE_LINGER_MS = 5000;

export const Opcode = { CONTINUATION: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;

/**
 * Writes a WebSocket frame header (FIN, `opcode`, payload length, mask bit) for a payload of
 * `length` bytes into `out`; returns the offset where the masking key (if masked) or the payload starts.
 */
function writeFrameHeader(out: Buffer, opcode: number, length: number, masked: boolean): number {
  out[0] = 0x80 | opcode;
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

/** Messages up to this size are written as one buffer (header and payload copied together): one small copy costs less than a second write. */
const COPY_UP_TO = 16 * 1024;

/**
 * Writes whole frames to a socket, masked (the dialling side, RFC 6455 5.3) or not. Every write
 * carries `done` as its completion callback (the transport's backpressure hook).
 */
export class WsFrameWriter {
  constructor(
    private readonly socket: Socket,
    private readonly mask: boolean,
    private readonly done: () => void,
  ) {}

  /**
   * One binary message of `header` + `payload`: unmasked, the frame header and our header go in one
   * small buffer and the payload pieces as they are (no copy). Masked, with `mayChange` (the pieces
   * were handed over) the pieces are masked where they lie and written behind a small buffer holding
   * the frame header, the key and the masked header (no copy); otherwise one buffer with everything
   * masked into it (one copy).
   */
  writeParts(header: Uint8Array, payload: readonly Uint8Array[], mayChange: boolean): void {
    let length = header.byteLength;
    for (const piece of payload) length += piece.byteLength;
    const headSize = frameHeaderSize(length);
    if (this.mask) {
      const inPlace = mayChange && payload.length > 0;
      const out = Buffer.allocUnsafe(headSize + 4 + (inPlace ? header.byteLength : length));
      const start = this.writeKey(out, Opcode.BINARY, length);
      const key = KEY;
      maskInto(header, key, out, start, header.byteLength);
      let at = header.byteLength;
      for (const part of payload) {
        // The key restarts at each part; a part that starts off a multiple of 4 gets it rotated.
        const k = rotatedKey(key, at & 3, SHIFTED_KEY);
        if (inPlace) maskInto(part, k, part, 0, part.byteLength);
        else maskInto(part, k, out, start + at, part.byteLength);
        at += part.byteLength;
      }
      if (inPlace) this.writeAll(out, payload);
      else this.socket.write(out, this.done);
      return;
    }
    if (length <= COPY_UP_TO) {
      const out = Buffer.allocUnsafe(headSize + length);
      let at = writeFrameHeader(out, Opcode.BINARY, length, false);
      out.set(header, at);
      at += header.byteLength;
      for (const part of payload) {
        out.set(part, at);
        at += part.byteLength;
      }
      this.socket.write(out, this.done);
      return;
    }
    const out = Buffer.allocUnsafe(headSize + header.byteLength);
    out.set(header, writeFrameHeader(out, Opcode.BINARY, length, false));
    if (payload.length === 0) this.socket.write(out, this.done);
    else this.writeAll(out, payload);
  }

  /** A control frame (close, ping, pong): at most 125 bytes of payload, never copied from the caller's buffer in place. */
  writeControl(opcode: number, payload: Uint8Array): void {
    const length = Math.min(payload.byteLength, 125);
    const out = Buffer.allocUnsafe(2 + (this.mask ? 4 : 0) + length);
    if (this.mask) maskInto(payload, KEY, out, this.writeKey(out, opcode, length), length);
    else out.set(payload.subarray(0, length), writeFrameHeader(out, opcode, length, false));
    this.socket.write(out, this.done);
  }

  /** Writes the frame header and a fresh masking key into `out`; returns where the payload starts. */
  private writeKey(out: Buffer, opcode: number, length: number): number {
    const keyAt = writeFrameHeader(out, opcode, length, true);
    const key = KEY;
    nextMaskKey(key);
    out[keyAt] = key[0]!;
    out[keyAt + 1] = key[1]!;
    out[keyAt + 2] = key[2]!;
    out[keyAt + 3] = key[3]!;
    return keyAt + 4;
  }

  /** Writes `first` and the pieces in one corked batch; the last write carries the completion callback. */
  private writeAll(first: Buffer, pieces: readonly Uint8Array[]): void {
    const socket = this.socket;
    socket.cork();
    socket.write(first);
    for (let i = 0; i < pieces.length - 1; i++) socket.write(pieces[i]!);
    socket.write(pieces[pieces.length - 1]!, this.done);
    socket.uncork();
  }
}

/** The close codes a peer may send (RFC 6455 7.4; 1004-1006 and 1015 are never sent). */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

export interface WsReaderHandlers {
  /** A whole data message, as the pieces it arrived in (unmasked; views of the socket's reads). */
  message(pieces: Buffer[], length: number, binary: boolean): void;
  ping(payload: Buffer): void;
  pong(payload: Buffer): void;
  /** The peer's close frame: its code (1005 when it sent none) and reason. Nothing is parsed after it. */
  close(code: number, reason: string): void;
  /** The peer broke the protocol: the close code to answer with (1002, 1007 or 1009) and why. Nothing is parsed after it. */
  error(code: number, message: string): void;
}

const enum ReadState {
  Header,
  Payload,
  Done,
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses WebSocket frames from socket reads. `masked`: frames must be masked (the accepting side)
 * or must not be (the dialling side). A data message longer than `maxPayload` (all its fragments
 * together) is refused with 1009 as soon as its length is known, before its bytes are kept.
 */
export class WsFrameReader {
  /** Reads not yet parsed (while a frame header is incomplete) and the offset into the first. */
  private reads: Buffer[] = [];
  private readAt = 0;
  private available = 0;
  private state = ReadState.Header;
  /** The frame being read. */
  private opcode = 0;
  private fin = false;
  private remaining = 0;
  private frameAt = 0;
  /** The frame's masking key, as a 32-bit number (see KEY). */
  private key = 0;
  /** The data message being read (across fragments). */
  private messageOpcode = -1;
  private pieces: Buffer[] = [];
  private messageLength = 0;
  /** A control frame's payload (at most 125 bytes). */
  private control: Buffer[] = [];

  constructor(
    private readonly masked: boolean,
    private readonly maxPayload: number,
    private readonly handlers: WsReaderHandlers,
  ) {}

  /** Parses one read. The reader keeps views of it (no copy) for the messages it completes. */
  push(chunk: Buffer): void {
    if (this.finished || chunk.byteLength === 0) return;
    this.reads.push(chunk);
    this.available += chunk.byteLength;
    for (;;) {
      const progressed = this.state === ReadState.Header ? this.readHeader() : this.readPayload();
      if (!progressed || this.finished) return;
    }
  }

  /** True once a close frame or a protocol error ended the parsing. */
  get finished(): boolean {
    return this.state === ReadState.Done;
  }

  private byteAt(i: number): number {
    let at = this.readAt + i;
    for (const read of this.reads) {
      if (at < read.byteLength) return read[at]!;
      at -= read.byteLength;
    }
    return 0;
  }

  /** Drops `n` parsed bytes from the front. */
  private skip(n: number): void {
    this.available -= n;
    while (n > 0) {
      const first = this.reads[0]!;
      const left = first.byteLength - this.readAt;
      if (n < left) {
        this.readAt += n;
        return;
      }
      n -= left;
      this.reads.shift();
      this.readAt = 0;
    }
  }

  /** Takes up to `n` bytes from the front as a view of the first read. */
  private take(n: number): Buffer {
    const first = this.reads[0]!;
    const left = first.byteLength - this.readAt;
    const size = Math.min(n, left);
    const piece = first.subarray(this.readAt, this.readAt + size);
    this.available -= size;
    if (size === left) {
      this.reads.shift();
      this.readAt = 0;
    } else this.readAt += size;
    return piece;
  }

  private fail(code: number, message: string): false {
    this.state = ReadState.Done;
    this.reads = [];
    this.pieces = [];
    this.handlers.error(code, message);
    return false;
  }

  /** Reads a frame header once all its bytes are there; false to wait for more (or after an error). */
  private readHeader(): boolean {
    if (this.available < 2) return false;
    const b0 = this.byteAt(0);
    const b1 = this.byteAt(1);
    const masked = (b1 & 0x80) !== 0;
    const len7 = b1 & 0x7f;
    const size = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (this.available < size) return false;
    if ((b0 & 0x70) !== 0) return this.fail(1002, 'RSV bits set without a negotiated extension');
    if (masked !== this.masked) return this.fail(1002, this.masked ? 'unmasked frame from a client' : 'masked frame from a server');
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    let length = len7;
    let at = 2;
    if (len7 === 126) {
      length = (this.byteAt(2) << 8) | this.byteAt(3);
      at = 4;
    } else if (len7 === 127) {
      const high = ((this.byteAt(2) << 24) >>> 0) + (this.byteAt(3) << 16) + (this.byteAt(4) << 8) + this.byteAt(5);
      const low = ((this.byteAt(6) << 24) >>> 0) + (this.byteAt(7) << 16) + (this.byteAt(8) << 8) + this.byteAt(9);
      if (high > 0x1fffff) return this.fail(1009, 'frame length beyond 2^53');
      length = high * 2 ** 32 + low;
      at = 10;
    }
    if (opcode >= 8) {
      if (opcode > Opcode.PONG) return this.fail(1002, `unknown opcode ${opcode}`);
      if (!fin) return this.fail(1002, 'fragmented control frame');
      if (length > 125) return this.fail(1002, 'control frame longer than 125 bytes');
    } else if (opcode === Opcode.CONTINUATION) {
      if (this.messageOpcode < 0) return this.fail(1002, 'continuation frame without a message to continue');
    } else if (opcode === Opcode.TEXT || opcode === Opcode.BINARY) {
      if (this.messageOpcode >= 0) return this.fail(1002, 'new message before the previous one ended');
    } else return this.fail(1002, `unknown opcode ${opcode}`);
    if (opcode < 8 && this.messageLength + length > this.maxPayload) return this.fail(1009, `message longer than ${this.maxPayload} bytes`);
    if (masked) this.key = ((this.byteAt(at) << 24) >>> 0) + (this.byteAt(at + 1) << 16) + (this.byteAt(at + 2) << 8) + this.byteAt(at + 3);
    this.skip(size);
    this.opcode = opcode;
    this.fin = fin;
    this.remaining = length;
    this.frameAt = 0;
    if (opcode === Opcode.TEXT || opcode === Opcode.BINARY) this.messageOpcode = opcode;
    this.state = ReadState.Payload;
    return true;
  }

  /** Takes the frame's payload bytes that are there; true once the frame is complete and handled. */
  private readPayload(): boolean {
    const control = this.opcode >= 8;
    if (this.masked) KEY.writeUInt32BE(this.key, 0);
    while (this.remaining > 0 && this.available > 0) {
      const piece = this.take(this.remaining);
      if (this.masked) maskInto(piece, rotatedKey(KEY, this.frameAt & 3, SHIFTED_KEY), piece, 0, piece.byteLength);
      this.remaining -= piece.byteLength;
      this.frameAt += piece.byteLength;
      if (control) this.control.push(piece);
      else {
        this.pieces.push(piece);
        this.messageLength += piece.byteLength;
      }
    }
    if (this.remaining > 0) return false;
    this.state = ReadState.Header;
    if (control) {
      const payload = this.control.length === 1 ? this.control[0]! : Buffer.concat(this.control);
      this.control = [];
      this.onControl(payload);
    } else if (this.fin) {
      const pieces = this.pieces;
      const length = this.messageLength;
      const binary = this.messageOpcode === Opcode.BINARY;
      this.pieces = [];
      this.messageLength = 0;
      this.messageOpcode = -1;
      this.handlers.message(pieces, length, binary);
    }
    return true;
  }

  private onControl(payload: Buffer): void {
    if (this.opcode === Opcode.PING) return this.handlers.ping(payload);
    if (this.opcode === Opcode.PONG) return this.handlers.pong(payload);
    if (payload.byteLength === 1) {
      this.fail(1002, 'close frame with a one-byte payload');
      return;
    }
    let code = 1005;
    let reason = '';
    if (payload.byteLength >= 2) {
      code = payload.readUInt16BE(0);
      if (!isValidCloseCode(code)) {
        this.fail(1002, `invalid close code ${code}`);
        return;
      }
      try {
        reason = utf8.decode(payload.subarray(2));
      } catch {
        this.fail(1007, 'close reason is not UTF-8');
        return;
      }
    }
    this.state = ReadState.Done;
    this.reads = [];
    this.handlers.close(code, reason);
  }
}
