/**
 * Keepalive and round-trip time (docs/protocol.md, "Keepalive"): a PING as soon as the session is
 * open, a few RTT probes soon after, and then every interval; a PING still unanswered when it is
 * judged (the next tick; a probe's, the tick after) means the connection is dead. Each PONG gives a round-trip sample, smoothed for the programs and kept for the base RTT that
 * window growth uses. Answering the peer's PINGs is the writer's job (`FairWriter.answerPing`).
 */
import { TunnelError } from './errors.js';
import { FrameKind, encodeFrame } from './frames.js';

/** How many recent ping samples the base round-trip time is the least of. */
const RTT_SAMPLES = 8;

/**
 * Extra PINGs after the session opens, ms after the first: RTT probes. The first sample is taken
 * while both programs are busy starting the session (a cold JIT, a TLS handshake, registration);
 * on loopback it read 12 ms against a path of 0.1 ms, and with one ping every 20 s it stayed the
 * base RTT for as long, so how far windows grew depended on the session's age. A few probes soon
 * after the start give window growth a sample of the path itself. Probes not earlier than the
 * first interval tick are not sent.
 */
export const RTT_PROBE_DELAYS_MS: readonly number[] = [250, 1000, 3000, 8000];

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
  /** The next RTT probe (one timer at a time), and how many probe times have passed. */
  private probeTimer: NodeJS.Timeout | null = null;
  private probes = 0;
  private startedAt = 0;
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
   * The session is open: ping now, probe the RTT a few times soon after (RTT_PROBE_DELAYS_MS), then
   * ping every interval. A PING is judged at the next interval tick, a probe (sent between ticks)
   * at the one after: unanswered by then, the peer is dead. A tick that finds a probe still in
   * flight and not yet due sends nothing.
   */
  start(): void {
    this.startedAt = this.now();
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
    this.scheduleProbe();
  }

  /** The session closed. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
  }

  private scheduleProbe(): void {
    const at = RTT_PROBE_DELAYS_MS[this.probes];
    if (at === undefined || at >= this.intervalMs) return;
    this.probeTimer = setTimeout(
      () => {
        this.probeTimer = null;
        this.probes++;
        // A ping still in flight gives its own sample.
        if (this.timer && !this.outstanding) this.sendPing(2);
        if (this.timer) this.scheduleProbe();
      },
      Math.max(0, this.startedAt + at - this.now()),
    );
    this.probeTimer.unref?.();
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
