/**
 * Keepalive and round-trip time (docs/protocol.md, "Keepalive"): a PING as soon as the session is
 * open and then every interval; a PING still unanswered at the next tick means the connection is
 * dead. Each PONG gives a round-trip sample, smoothed for the programs and kept for the base RTT that
 * window growth uses. Answering the peer's PINGs is the writer's job (`FairWriter.answerPing`).
 */
import { TunnelError } from './errors.js';
import { FrameKind, encodeFrame } from './frames.js';

/** How many recent ping samples the base round-trip time is the least of. */
const RTT_SAMPLES = 8;

/** What keepalive needs from its session. */
export interface KeepaliveHost {
  /** Queues a control frame (the writer's). */
  sendControl(frame: Uint8Array): void;
  /** No PONG came in time: the session must close with `err`. */
  fail(err: TunnelError): void;
  /** A round-trip sample, ms. */
  rtt(sampleMs: number): void;
}

export class Keepalive {
  private smoothedMs: number | null = null;
  private baseMs: number | null = null;
  private readonly samples: number[] = [];
  private outstanding: { nonce: number; sentAt: number } | null = null;
  private nonce = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly host: KeepaliveHost;

  constructor(intervalMs: number, now: () => number, host: KeepaliveHost) {
    this.intervalMs = intervalMs;
    this.now = now;
    this.host = host;
  }

  /** Smoothed round-trip time, ms; null until the first pong. */
  get rttMs(): number | null {
    return this.smoothedMs;
  }

  /**
   * The path's own round-trip time: the least of the recent samples, ms (null until the first pong).
   * Windows grow by this one: a ping that waited behind queued data measures the queue, and growing
   * windows by it would only queue more.
   */
  get baseRttMs(): number | null {
    return this.baseMs;
  }

  /** The session is open: ping now and then every interval. */
  start(): void {
    this.sendPing();
    this.timer = setInterval(() => {
      if (this.outstanding) {
        this.host.fail(new TunnelError('KEEPALIVE_TIMEOUT', `no pong within ${this.intervalMs} ms`));
        return;
      }
      this.sendPing();
    }, this.intervalMs);
    this.timer.unref?.();
  }

  /** The session closed. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** A PONG arrived; one with another nonce than the outstanding PING's is ignored. */
  onPong(nonce: number): void {
    const p = this.outstanding;
    if (!p || p.nonce !== nonce) return;
    this.outstanding = null;
    const sample = Math.max(0, this.now() - p.sentAt);
    this.smoothedMs = this.smoothedMs === null ? sample : this.smoothedMs * 0.75 + sample * 0.25;
    this.samples.push(sample);
    if (this.samples.length > RTT_SAMPLES) this.samples.shift();
    this.baseMs = Math.min(...this.samples);
    this.host.rtt(sample);
  }

  private sendPing(): void {
    this.nonce = (this.nonce + 1) & 0x7fffffff;
    this.outstanding = { nonce: this.nonce, sentAt: this.now() };
    this.host.sendControl(encodeFrame({ kind: FrameKind.PING, nonce: this.nonce }));
  }
}
