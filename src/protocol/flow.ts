/**
 * Flow-control bookkeeping: byte budgets (per session, per process) and the receive window of one
 * stream, which returns credit as the consumer drains and grows with the measured round-trip time.
 */

/**
 * A cap on bytes held in receive buffers. One per session, and optionally one shared by every
 * session of a process. Not thread-safe (Node is single-threaded); callers release exactly what they
 * reserved.
 */
export class BufferBudget {
  readonly limit: number;
  private usedBytes = 0;
  private readonly parent: BufferBudget | null;

  constructor(limit: number, parent: BufferBudget | null = null) {
    this.limit = limit;
    this.parent = parent;
  }

  get used(): number {
    return this.usedBytes;
  }

  /** Fraction of the tightest budget in the chain that is still free, 0..1. */
  headroom(): number {
    const own = 1 - this.usedBytes / this.limit;
    return this.parent ? Math.min(own, this.parent.headroom()) : own;
  }

  tryReserve(n: number): boolean {
    if (this.usedBytes + n > this.limit) return false;
    if (this.parent && !this.parent.tryReserve(n)) return false;
    this.usedBytes += n;
    return true;
  }

  release(n: number): void {
    this.usedBytes -= n;
    this.parent?.release(n);
  }
}

/** The least round-trip time window growth assumes, ms. */
export const MIN_RTT_MS = 0.5;

/**
 * The receive side of one stream's window. `outstanding` is the credit the peer still holds: bytes
 * it may send before the next WINDOW frame. Credit is returned by `consumed`, i.e. when the reader
 * took the bytes, never when they merely arrived.
 */
export class ReceiveWindow {
  /** The current window size (grows up to maxWindow). */
  size: number;
  /** Credit the peer holds right now. */
  outstanding: number;
  private unacked = 0;
  private epochStart: number;
  private readonly maxWindow: number;

  constructor(initial: number, maxWindow: number, now: number) {
    this.size = initial;
    this.outstanding = initial;
    this.maxWindow = Math.max(initial, maxWindow);
    this.epochStart = now;
  }

  /** Accounts received bytes; false when they overrun the credit the peer was given. */
  received(n: number): boolean {
    if (n > this.outstanding) return false;
    this.outstanding -= n;
    return true;
  }

  /** Whether `consumed(n, ...)` would look at the RTT: the call returns credit and the window may still grow. */
  mayGrowOn(n: number, mayGrow: boolean): boolean {
    return mayGrow && this.size < this.maxWindow && this.unacked + n >= this.size / 2;
  }

  /**
   * Accounts bytes the consumer took. Returns the increment to send in a WINDOW frame, or 0 when it
   * is not yet worth a frame (less than half a window consumed). The window doubles when half of it
   * was consumed within two round trips: the sender would otherwise stall waiting for credit. The
   * round trip counts as at least MIN_RTT_MS (the time two busy event loops take to pass credit
   * back even on loopback), so a window settles near four times what the path holds in flight;
   * bigger windows would only queue data ahead of other streams' frames.
   * `mayGrow` lets the caller refuse growth when memory budgets are tight.
   */
  consumed(n: number, now: number, rttMs: number | null, mayGrow: boolean): number {
    this.unacked += n;
    if (this.unacked < this.size / 2) return 0;
    let extra = 0;
    if (mayGrow && rttMs !== null && this.size < this.maxWindow && now - this.epochStart < 2 * Math.max(rttMs, MIN_RTT_MS)) {
      const grown = Math.min(this.size * 2, this.maxWindow);
      extra = grown - this.size;
      this.size = grown;
    }
    const increment = this.unacked + extra;
    this.unacked = 0;
    this.outstanding += increment;
    this.epochStart = now;
    return increment;
  }
}
