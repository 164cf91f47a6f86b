/**
 * One manifest project on the leader: applies each snapshot kas sends, one apply at a time (the
 * latest snapshot wins over one still waiting), and applies the last snapshot again every
 * `reconcilePeriodMs` so changes made by hand in the cluster are undone (drift).
 */
import type { Logger } from '../../shared/logger.js';
import type { Applier, ApplyResult } from './applier.js';
import type { ManifestSnapshot } from './snapshot.js';

export type ApplyTrigger = 'snapshot' | 'reconcile';

export interface ProjectRunnerOptions {
  applier: Pick<Applier, 'apply'>;
  reconcilePeriodMs: number;
  logger: Logger;
  onResult: (result: ApplyResult, trigger: ApplyTrigger) => void;
}

export class ProjectRunner {
  private latest: ManifestSnapshot | null = null;
  private pending: { snapshot: ManifestSnapshot; done: Array<() => void> } | null = null;
  private lastApplyEnded = 0;
  private timer: NodeJS.Timeout | null = null;
  private wake: (() => void) | null = null;
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  private stopped = false;

  constructor(private readonly o: ProjectRunnerOptions) {}

  /** The snapshot applied last (what the reconcile applies again). */
  get current(): ManifestSnapshot | null {
    return this.latest;
  }

  /** Queues a snapshot; resolves once it was applied (or replaced by a newer one, or the runner stopped). */
  submit(snapshot: ManifestSnapshot): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopped) {
        resolve();
        return;
      }
      const done = this.pending?.done ?? [];
      done.push(resolve);
      this.pending = { snapshot, done };
      this.kick();
      this.start();
    });
  }

  private kick(): void {
    const wake = this.wake;
    this.wake = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    wake?.();
  }

  private start(): void {
    this.loop ??= this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let trigger: ApplyTrigger | null = null;
      let snapshot: ManifestSnapshot | null = null;
      let done: Array<() => void> = [];
      if (this.pending) {
        ({ snapshot, done } = this.pending);
        this.pending = null;
        trigger = 'snapshot';
      } else if (this.latest && performance.now() - this.lastApplyEnded >= this.o.reconcilePeriodMs) {
        snapshot = this.latest;
        trigger = 'reconcile';
      }
      if (snapshot && trigger) {
        this.latest = snapshot;
        try {
          const result = await this.o.applier.apply(snapshot, this.abort.signal);
          if (!this.stopped) this.o.onResult(result, trigger);
        } catch (err) {
          if (!this.stopped) this.o.logger.error({ err, projectId: snapshot.projectId, commit: snapshot.commit }, 'gitops: apply failed');
        } finally {
          this.lastApplyEnded = performance.now();
          for (const d of done) d();
        }
        continue;
      }
      const waitMs = this.latest ? Math.max(0, this.o.reconcilePeriodMs - (performance.now() - this.lastApplyEnded)) : 2 ** 31 - 1;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(() => this.kick(), Math.min(waitMs, 2 ** 31 - 1));
      });
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort(new Error('gitops: project no longer followed'));
    this.kick();
    await this.loop;
    for (const d of this.pending?.done ?? []) d();
    this.pending = null;
  }
}
