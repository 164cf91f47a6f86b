/**
 * Reconnect delays: exponential backoff with full jitter (a uniformly random delay between 0 and
 * min(cap, base * 2^attempt)), so a fleet of agents does not reconnect in lockstep after a kas
 * restart. The attempt counter resets once a connection has stayed up for `resetAfterMs`.
 */

export interface BackoffOptions {
  /** Upper bound of the first delay, ms. */
  baseMs: number;
  /** Largest upper bound any delay may have, ms. */
  capMs: number;
  /** A connection that stayed up this long resets the attempt counter, ms. */
  resetAfterMs: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ baseMs: 1000, capMs: 60_000, resetAfterMs: 60_000 });

/** The delay before retry number `attempt` (0 for the first): random in [0, min(cap, base * 2^attempt)). */
export function fullJitterDelay(attempt: number, options: Pick<BackoffOptions, 'baseMs' | 'capMs'>, random: () => number = Math.random): number {
  // 2^attempt overflows to Infinity for large attempts; min() keeps the cap.
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}

/** The retry state of one connection slot. Not shared between slots. */
export class Backoff {
  private attemptValue = 0;
  private readonly options: BackoffOptions;
  private readonly random: () => number;

  constructor(options: Partial<BackoffOptions> = {}, random: () => number = Math.random) {
    this.options = { ...DEFAULT_BACKOFF, ...options };
    this.random = random;
  }

  /** How many delays were handed out since the last reset. */
  get attempt(): number {
    return this.attemptValue;
  }

  /** The delay before the next attempt; each call counts one attempt. */
  next(): number {
    const delay = fullJitterDelay(this.attemptValue, this.options, this.random);
    this.attemptValue++;
    return delay;
  }

  /** Records how long a connection stayed up; a long enough one resets the counter. Returns true when it did. */
  connectionEnded(upMs: number): boolean {
    if (upMs >= this.options.resetAfterMs) {
      this.reset();
      return true;
    }
    return false;
  }

  reset(): void {
    this.attemptValue = 0;
  }
}
