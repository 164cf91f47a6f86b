/**
 * The frame codec: every frame is one msgpack array `[kind, ...fields]` carried in one binary
 * message. Decoding is strict: anything that is not exactly one of the shapes below is refused with a
 * coded TunnelError, so the session never acts on a half-understood frame. docs/protocol.md is the
 * normative description of these shapes.
 */
import { Packr, Unpackr } from 'msgpackr';
import { TunnelError } from './errors.js';

export const FrameKind = {
  HELLO: 1,
  WELCOME: 2,
  OPEN: 3,
  REPLY: 4,
  DATA: 5,
  WINDOW: 6,
  RESET: 7,
  PING: 8,
  PONG: 9,
  GOAWAY: 10,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

/** A value that msgpack carries and our heads may hold. */
export type WireValue = null | boolean | number | string | Uint8Array | WireValue[] | { [key: string]: WireValue };
/** A stream head: what the opener says the stream is (for HTTP, the request line and headers). */
export type Head = { [key: string]: WireValue };

export interface HelloFrame { kind: typeof FrameKind.HELLO; body: Head }
export interface WelcomeFrame { kind: typeof FrameKind.WELCOME; body: Head }
export interface OpenFrame { kind: typeof FrameKind.OPEN; id: number; head: Head; data: Uint8Array | null; fin: boolean }
export interface ReplyFrame { kind: typeof FrameKind.REPLY; id: number; head: Head; data: Uint8Array | null; fin: boolean }
export interface DataFrame { kind: typeof FrameKind.DATA; id: number; data: Uint8Array; fin: boolean }
export interface WindowFrame { kind: typeof FrameKind.WINDOW; id: number; increment: number }
export interface ResetFrame { kind: typeof FrameKind.RESET; id: number; code: number; message: string }
export interface PingFrame { kind: typeof FrameKind.PING; nonce: number }
export interface PongFrame { kind: typeof FrameKind.PONG; nonce: number }
export interface GoawayFrame { kind: typeof FrameKind.GOAWAY; code: number; message: string; lastStreamId: number; graceMs: number }

export type Frame =
  | HelloFrame | WelcomeFrame | OpenFrame | ReplyFrame | DataFrame | WindowFrame
  | ResetFrame | PingFrame | PongFrame | GoawayFrame;

/** Largest stream id and window increment: ids and counters are unsigned 31-bit integers. */
export const MAX_UINT31 = 0x7fffffff;
/** Longest message in RESET and GOAWAY frames; longer ones are refused. */
export const MAX_REASON_LENGTH = 1024;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
// structuredClone: false refuses msgpackr's id/pointer extensions (0x69, 0x70): with them a few KB can
// name one value a million times (or a cycle), and checking such a head would stall the read loop.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, moreTypes: false, structuredClone: false });

const EMPTY = new Uint8Array(0);

export function encodeFrame(frame: Frame): Uint8Array {
  switch (frame.kind) {
    case FrameKind.HELLO:
    case FrameKind.WELCOME:
      return packr.pack([frame.kind, frame.body]);
    case FrameKind.OPEN:
    case FrameKind.REPLY:
      return packr.pack([frame.kind, frame.id, frame.head, frame.data, frame.fin]);
    case FrameKind.DATA:
      return packr.pack([frame.kind, frame.id, frame.data, frame.fin]);
    case FrameKind.WINDOW:
      return packr.pack([frame.kind, frame.id, frame.increment]);
    case FrameKind.RESET:
      return packr.pack([frame.kind, frame.id, frame.code, frame.message]);
    case FrameKind.PING:
    case FrameKind.PONG:
      return packr.pack([frame.kind, frame.nonce]);
    case FrameKind.GOAWAY:
      return packr.pack([frame.kind, frame.code, frame.message, frame.lastStreamId, frame.graceMs]);
  }
}

/** A head in msgpack, packed once: measured by the stream table, then framed by encodeHeadFrame. */
export function packHead(head: Head): Uint8Array {
  return packr.pack(head);
}

/**
 * Bytes an OPEN or REPLY frame adds to its packed head when its id is 1 and it carries no data
 * (array marker, kind, id, nil, false): what a head is measured as against the header limits.
 */
export const HEAD_FRAME_BASE = 5;

/** Writes a msgpack unsigned integer (up to 2^32-1) at `at`; returns the offset after it. */
function writeUint(buf: Buffer, at: number, v: number): number {
  if (v < 0x80) {
    buf[at] = v;
    return at + 1;
  }
  if (v < 0x100) {
    buf[at] = 0xcc;
    buf[at + 1] = v;
    return at + 2;
  }
  if (v < 0x10000) {
    buf[at] = 0xcd;
    buf.writeUInt16BE(v, at + 1);
    return at + 3;
  }
  buf[at] = 0xce;
  buf.writeUInt32BE(v, at + 1);
  return at + 5;
}

/**
 * An OPEN or REPLY frame around a head packed by packHead: the same bytes encodeFrame makes of the
 * frame, without packing the head a second time.
 */
export function encodeHeadFrame(kind: typeof FrameKind.OPEN | typeof FrameKind.REPLY, id: number, packedHead: Uint8Array, data: Uint8Array | null, fin: boolean): Buffer {
  const n = data === null ? 0 : data.byteLength;
  const binHeader = data === null ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  const buf = Buffer.allocUnsafe(2 + 5 + packedHead.byteLength + binHeader + n + 1);
  buf[0] = 0x95;
  buf[1] = kind;
  let at = writeUint(buf, 2, id);
  buf.set(packedHead, at);
  at += packedHead.byteLength;
  if (data === null) {
    buf[at++] = 0xc0;
  } else {
    if (n < 0x100) {
      buf[at] = 0xc4;
      buf[at + 1] = n;
    } else if (n < 0x10000) {
      buf[at] = 0xc5;
      buf.writeUInt16BE(n, at + 1);
    } else {
      buf[at] = 0xc6;
      buf.writeUInt32BE(n, at + 1);
    }
    at += binHeader;
    buf.set(data, at);
    at += n;
  }
  buf[at++] = fin ? 0xc3 : 0xc2;
  return buf.subarray(0, at);
}

function malformed(what: string): TunnelError {
  return new TunnelError('MALFORMED_FRAME', `malformed frame: ${what}`);
}

function isUint31(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_UINT31;
}

function streamId(v: unknown): number {
  if (!isUint31(v) || v === 0) throw malformed('stream id must be an integer from 1 to 2^31-1');
  return v;
}

function bool(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw malformed(`${field} must be a boolean`);
  return v;
}

function bytes(v: unknown, field: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw malformed(`${field} must be binary`);
  return v;
}

function optionalBytes(v: unknown, field: string): Uint8Array | null {
  if (v === null || v === undefined) return null;
  return bytes(v, field);
}

function reason(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length > MAX_REASON_LENGTH) throw malformed(`${field} must be a string of at most ${MAX_REASON_LENGTH} characters`);
  return v;
}

/** True for the plain values msgpack gives us; refuses extension types (dates, C1 markers) anywhere inside. */
function isWireValue(v: unknown, depth: number): v is WireValue {
  if (depth > 16) return false;
  if (v === null || typeof v === 'boolean' || typeof v === 'string' || v instanceof Uint8Array) return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every((item) => isWireValue(item, depth + 1));
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.values(v as Record<string, unknown>).every((item) => isWireValue(item, depth + 1));
  }
  return false;
}

function head(v: unknown, field: string): Head {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array || !isWireValue(v, 0)) {
    throw malformed(`${field} must be a map of plain values`);
  }
  return v as Head;
}

function arity(arr: unknown[], n: number, name: string): void {
  if (arr.length !== n) throw malformed(`${name} frame must have ${n} elements, got ${arr.length}`);
}

/**
 * Decodes one message. Throws TunnelError MALFORMED_FRAME for anything that is not a well-formed
 * frame, UNKNOWN_FRAME_KIND for a well-formed envelope of an unknown kind.
 */
export function decodeFrame(message: Uint8Array): Frame {
  let value: unknown;
  try {
    value = unpackr.unpack(message);
  } catch (err) {
    throw new TunnelError('MALFORMED_FRAME', 'malformed frame: not a msgpack value', { cause: err });
  }
  if (!Array.isArray(value) || value.length === 0) throw malformed('a frame is a non-empty msgpack array');
  const kind: unknown = value[0];
  if (typeof kind !== 'number' || !Number.isInteger(kind)) throw malformed('the first element (kind) must be an integer');
  switch (kind) {
    case FrameKind.HELLO:
    case FrameKind.WELCOME:
      arity(value, 2, kind === FrameKind.HELLO ? 'HELLO' : 'WELCOME');
      return { kind, body: head(value[1], 'handshake body') };
    case FrameKind.OPEN:
    case FrameKind.REPLY:
      arity(value, 5, kind === FrameKind.OPEN ? 'OPEN' : 'REPLY');
      return { kind, id: streamId(value[1]), head: head(value[2], 'head'), data: optionalBytes(value[3], 'data'), fin: bool(value[4], 'fin') };
    case FrameKind.DATA:
      arity(value, 4, 'DATA');
      return { kind, id: streamId(value[1]), data: bytes(value[2], 'data'), fin: bool(value[3], 'fin') };
    case FrameKind.WINDOW: {
      arity(value, 3, 'WINDOW');
      const increment: unknown = value[2];
      if (!isUint31(increment) || increment === 0) throw malformed('window increment must be an integer from 1 to 2^31-1');
      return { kind, id: streamId(value[1]), increment };
    }
    case FrameKind.RESET: {
      arity(value, 4, 'RESET');
      const code: unknown = value[2];
      if (!isUint31(code)) throw malformed('reset code must be a non-negative integer');
      return { kind, id: streamId(value[1]), code, message: reason(value[3], 'reset message') };
    }
    case FrameKind.PING:
    case FrameKind.PONG: {
      arity(value, 2, kind === FrameKind.PING ? 'PING' : 'PONG');
      const nonce: unknown = value[1];
      if (!isUint31(nonce)) throw malformed('ping nonce must be a non-negative integer');
      return { kind, nonce };
    }
    case FrameKind.GOAWAY: {
      arity(value, 5, 'GOAWAY');
      const [, code, message, lastStreamId, graceMs] = value as unknown[];
      if (!isUint31(code)) throw malformed('goaway code must be a non-negative integer');
      if (!isUint31(lastStreamId)) throw malformed('goaway last stream id must be a non-negative integer');
      if (!isUint31(graceMs)) throw malformed('goaway grace must be a non-negative integer of milliseconds');
      return { kind, code, message: reason(message, 'goaway message'), lastStreamId, graceMs };
    }
    default:
      throw new TunnelError('UNKNOWN_FRAME_KIND', `unknown frame kind ${kind}`);
  }
}

/**
 * Version 2's DATA frame (docs/protocol.md, "Raw DATA frames"): an 8-byte header and the payload as
 * is, not re-encoded by msgpack, so a sender can hand the payload to the socket without copying it
 * into an envelope and a receiver takes it as a view of the message. The first byte, 0x00, is never
 * the first byte of a msgpack frame (a frame is an array: 0x9X, 0xdc or 0xdd).
 *
 *   [0] 0x00 marker, [1] flags (bit 0: fin; the other bits 0), [2..3] 0, [4..7] stream id (uint32 BE)
 */
export const RAW_DATA_MARKER = 0x00;
export const RAW_DATA_HEADER_SIZE = 8;

/** The header of a raw DATA frame; the payload follows it in the same message. */
export function encodeRawDataHeader(id: number, fin: boolean): Buffer {
  const h = Buffer.allocUnsafe(RAW_DATA_HEADER_SIZE);
  h[0] = RAW_DATA_MARKER;
  h[1] = fin ? 1 : 0;
  h[2] = 0;
  h[3] = 0;
  h.writeUInt32BE(id, 4);
  return h;
}

/** A whole raw DATA frame in one buffer (tests, and transports that cannot send it in two parts). */
export function encodeRawData(id: number, data: Uint8Array, fin: boolean): Buffer {
  return Buffer.concat([encodeRawDataHeader(id, fin), data]);
}

function decodeRawData(message: Uint8Array): DataFrame {
  if (message.byteLength < RAW_DATA_HEADER_SIZE) throw malformed(`a raw DATA frame has at least ${RAW_DATA_HEADER_SIZE} bytes`);
  const flags = message[1]!;
  if ((flags & ~1) !== 0 || message[2] !== 0 || message[3] !== 0) throw malformed('raw DATA flags and reserved bytes must be 0 but for the fin bit');
  const id = ((message[4]! << 24) >>> 0) + (message[5]! << 16) + (message[6]! << 8) + message[7]!;
  return { kind: FrameKind.DATA, id: streamId(id), data: message.subarray(RAW_DATA_HEADER_SIZE), fin: flags === 1 };
}

/**
 * Decodes a message of a session that negotiated version 2: a raw DATA frame, or any msgpack frame
 * as `decodeFrame` reads it. (Version 1 sessions use `decodeFrame`, which refuses raw frames.)
 */
export function decodeFrameV2(message: Uint8Array): Frame {
  if (message.byteLength > 0 && message[0] === RAW_DATA_MARKER) return decodeRawData(message);
  return decodeFrame(message);
}

export { EMPTY as EMPTY_BYTES };
