/**
 * Keepalive and round-trip time (docs/protocol.md, "Keepalive"): a PING as soon as the session is
 * open and then every interval, plus one RTT probe when window growth first asks for the RTT; a
 * PING still unanswered when it is judged (the next tick; a probe's, the tick after) means the
 * connection is dead. Each PONG gives a round-trip sample, smoothed for the programs and kept for
 * the base RTT that window growth uses. Answering the peer's PINGs is the writer's job
 * (`FairWriter.answerPing`).
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
  /** The unanswered PING: its nonce, when it went out, and the interval tick that judges it. */
  private outstanding: { nonce: number; sentAt: number; judgedAt: number } | null = null;
  private nonce = 0;
  private ticks = 0;
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

  /**
   * The base RTT for window growth, or null while there is none to trust. The first sample is taken
   * while both programs are busy setting the session up (a cold JIT, a TLS handshake,
   * registration): on loopback it read 12 ms against a path of 0.1 ms, and as the only sample until
   * the next ping, 20 s on, it let windows grow to 16 MiB in a tenth of a second of bulk, and a
   * stalled reader's window with them. So the first time growth asks, a probe PING goes out at once
   * and windows wait for its answer (a millisecond on a fast path); sessions that never carry bulk
   * never probe.
   */
  rttForGrowth(): number | null {
    if (this.samples.length >= 2) return this.baseMs;
    if (this.samples.length === 1 && this.outstanding === null && this.timer !== null) this.sendPing(2);
    return null;
  }

  /**
   * The session is open: ping now and then every interval. A PING is judged at the next interval
   * tick, a probe (sent between ticks) at the one after: unanswered by then, the peer is dead. A
   * tick that finds a probe still in flight and not yet due sends nothing.
   */
  start(): void {
    this.sendPing(1);
    this.timer = setInterval(() => {
      this.ticks++;
      const p = this.outstanding;
      if (p) {
        if (this.ticks >= p.judgedAt) this.host.fail(new TunnelError('KEEPALIVE_TIMEOUT', `no pong within ${this.intervalMs} ms`));
        return;
      }
      this.sendPing(1);
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

  /** Sends a PING judged `ticksToAnswer` interval ticks from now. */
  private sendPing(ticksToAnswer: number): void {
    this.nonce = (this.nonce + 1) & 0x7fffffff;
    this.outstanding = { nonce: this.nonce, sentAt: this.now(), judgedAt: this.ticks + ticksToAnswer };
    this.host.sendControl(encodeFrame({ kind: FrameKind.PING, nonce: this.nonce }));
  }
}
