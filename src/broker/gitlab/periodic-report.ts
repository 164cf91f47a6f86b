/**
 * Reports kas sends GitLab on the usage report period (usage metrics, agent events): what a source
 * accumulated is taken, posted, and forgotten only after GitLab accepted it (2xx), so a failed post
 * (5xx, timeout, GitLab down) loses nothing and a successful one is never sent twice. One post at a
 * time; a flush while one is under way waits for it. The last flush runs on stop.
 */
import type { Logger } from '../../shared/logger.js';

/** What a report takes from its source: the body to post, and how to forget exactly what it held. */
export interface ReportBatch<T> {
  body: T;
  /** GitLab accepted the body: drop what it held (and nothing added since). */
  accepted(): void;
}

export interface ReportSource<T> {
  /** The batch to post now, or null when there is nothing to report. */
  take(): ReportBatch<T> | null;
}

export class PeriodicReport<T> {
  private timer: NodeJS.Timeout | null = null;
  private sending: Promise<void> | null = null;

  constructor(
    private readonly what: string,
    private readonly source: ReportSource<T>,
    private readonly post: (body: T) => Promise<void>,
    private readonly logger: Logger,
  ) {}

  start(periodMs: number): void {
    this.timer = setInterval(() => void this.flush(), periodMs);
    this.timer.unref();
  }

  /** Stops the timer and sends what is left (once). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }

  /** Sends what the source holds now; it forgets it once GitLab accepted. Never rejects. */
  flush(): Promise<void> {
    if (this.sending) return this.sending;
    const batch = this.source.take();
    if (!batch) return Promise.resolve();
    this.sending = this.post(batch.body)
      .then(
        () => batch.accepted(),
        (err: unknown) => this.logger.warn({ err }, `could not send ${this.what} to GitLab; they are kept for the next attempt`),
      )
      .finally(() => {
        this.sending = null;
      });
    return this.sending;
  }
}
