/**
 * The backpressure half of a WebSocket MessageTransport. `full` reads true while the bytes queued
 * are at or above the high-water mark, and arms the signal; every write carries `sent` as its
 * completion callback, and the first completion that finds the queue below the mark again calls
 * `drain`, so a writer that saw `full` is never left waiting with nothing armed to wake it.
 */
export class DrainSignal {
  private armed = false;

  constructor(
    private readonly queued: () => number,
    private readonly highWater: number,
    private readonly drain: () => void,
  ) {}

  get full(): boolean {
    if (this.queued() < this.highWater) return false;
    this.armed = true;
    return true;
  }

  /** A write's completion callback. */
  readonly sent = (): void => {
    if (this.armed && this.queued() < this.highWater) {
      this.armed = false;
      this.drain();
    }
  };
}
