/**
 * Session limits and tuning, with defaults that are safe on the internet. Each side announces the
 * limits it enforces on what it receives (in HELLO and WELCOME); a sender honours the peer's.
 */

export interface SessionLimits {
  /** Largest frame (one WebSocket message) this side accepts, in bytes. */
  maxFrameSize: number;
  /** Most streams the peer may have open towards this side at once. */
  maxStreams: number;
  /** Largest encoded stream head (OPEN or REPLY minus its data), in bytes. */
  maxHeaderSize: number;
  /** Credit each new stream starts with, in bytes, for data sent to this side. */
  initialWindow: number;
}

export interface SessionTuning {
  /** The window a stream may grow to when the round-trip time calls for it. */
  maxWindow: number;
  /** Largest DATA payload this side puts in one frame (bounded by the peer's maxFrameSize). */
  chunkSize: number;
  /** Cap on bytes received and not yet consumed, over all streams of the session. */
  maxSessionBuffer: number;
  /** Streams this side may queue locally while the peer's maxStreams is reached. */
  maxPendingOpens: number;
  /** Interval between pings, ms. A ping unanswered by the next tick closes the session. */
  pingIntervalMs: number;
  /** How long a handshake may take, ms. */
  handshakeTimeoutMs: number;
  /** Default grace for streams to finish after a drain, ms. */
  drainGraceMs: number;
  /**
   * Transport bytes queued beyond which the peer is deemed not to read at all: the session closes
   * with BUFFER_LIMIT. (Data stops at the transport's own high-water mark long before; only control
   * frames a peer provokes, such as RESETs of refused opens, can grow the queue this far.)
   */
  maxTransportBacklog: number;
}

export const DEFAULT_LIMITS: Readonly<SessionLimits> = Object.freeze({
  maxFrameSize: 1024 * 1024,
  maxStreams: 1024,
  maxHeaderSize: 64 * 1024,
  initialWindow: 256 * 1024,
});

export const DEFAULT_TUNING: Readonly<SessionTuning> = Object.freeze({
  maxWindow: 16 * 1024 * 1024,
  chunkSize: 64 * 1024,
  maxSessionBuffer: 64 * 1024 * 1024,
  maxPendingOpens: 1024,
  pingIntervalMs: 20_000,
  handshakeTimeoutMs: 10_000,
  drainGraceMs: 30_000,
  maxTransportBacklog: 16 * 1024 * 1024,
});

/** Bytes a frame needs besides its payload (msgpack array, kind, id, bin header, flag), rounded up. */
export const FRAME_OVERHEAD = 32;

/**
 * Slack a receiver allows when it measures a head as "frame size minus data length": that measure
 * includes the data's envelope (bin header, fin flag), up to 8 bytes more than the sender's measure
 * of the head alone, so a head the sender accepted is never refused for those bytes.
 */
export const HEAD_ENVELOPE_SLACK = 8;

/** Lowest maxFrameSize either side may announce: a full head plus a small chunk must fit. */
export const MIN_FRAME_SIZE = 4096;

/** Validates limits announced by a peer or configured locally; returns the name of the bad field, or null. */
export function checkLimits(l: SessionLimits): string | null {
  const intIn = (v: number, min: number, max: number) => Number.isInteger(v) && v >= min && v <= max;
  if (!intIn(l.maxFrameSize, MIN_FRAME_SIZE, 64 * 1024 * 1024)) return 'maxFrameSize';
  if (!intIn(l.maxStreams, 1, 1_000_000)) return 'maxStreams';
  if (!intIn(l.maxHeaderSize, 256, l.maxFrameSize - FRAME_OVERHEAD)) return 'maxHeaderSize';
  if (!intIn(l.initialWindow, 1024, 0x7fffffff)) return 'initialWindow';
  return null;
}
