import { pino } from 'pino';
import type { ApplyResult } from './applier.js';
import { ProjectRunner } from './project-runner.js';
import type { ManifestSnapshot } from './snapshot.js';
import { waitFor } from '../../../test/support/wait.js';

function snap(commit: string): ManifestSnapshot {
  return {
    projectId: 'p',
    commit,
    complete: true,
    errors: [],
    files: [],
    settings: { defaultNamespace: 'default', reconcileTimeoutMs: 1000, dryRunStrategy: 'none', prune: true, pruneTimeoutMs: 1000, prunePropagationPolicy: 'foreground', inventoryPolicy: 'must_match' },
  };
}

/** An applier whose applies the test finishes by hand. */
function manualApplier() {
  const calls: Array<{ commit: string; finish: () => void; signal?: AbortSignal }> = [];
  let running = 0;
  let maxRunning = 0;
  return {
    calls,
    get maxRunning() {
      return maxRunning;
    },
    apply: (s: ManifestSnapshot, signal?: AbortSignal) =>
      new Promise<ApplyResult>((resolve) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        calls.push({
          commit: s.commit,
          signal,
          finish: () => {
            running--;
            resolve({ projectId: s.projectId, commit: s.commit, dryRun: 'none', startedAt: '', durationMs: 0, applied: 0, unchanged: 0, pruned: 0, failed: 0, objects: [], errors: [] });
          },
        });
      }),
  };
}

describe('ProjectRunner', () => {
  test('one apply at a time; a snapshot waiting is replaced by a newer one; the last one is applied again after the period', async () => {
    const applier = manualApplier();
    const triggers: string[] = [];
    const runner = new ProjectRunner({ applier, reconcilePeriodMs: 200, logger: pino({ level: 'silent' }), onResult: (r, t) => triggers.push(`${r.commit}:${t}`) });
    try {
      const first = runner.submit(snap('c1'));
      await waitFor(() => applier.calls.length === 1, 'the first apply');
      const second = runner.submit(snap('c2'));
      const third = runner.submit(snap('c3'));
      applier.calls[0]!.finish();
      await first;
      await waitFor(() => applier.calls.length === 2, 'the next apply');
      expect(applier.calls[1]!.commit).toBe('c3'); // c2 was replaced while it waited
      applier.calls[1]!.finish();
      await Promise.all([second, third]);
      expect(triggers).toEqual(['c1:snapshot', 'c3:snapshot']);
      // The reconcile applies c3 again.
      await waitFor(() => applier.calls.length === 3, 'the reconcile', 5000);
      expect(applier.calls[2]!.commit).toBe('c3');
      applier.calls[2]!.finish();
      await waitFor(() => triggers.length === 3, 'the reconcile result');
      expect(triggers[2]).toBe('c3:reconcile');
      expect(applier.maxRunning).toBe(1);
    } finally {
      const stopping = runner.stop();
      for (const c of applier.calls) c.finish();
      await stopping;
    }
  });

  test('stop aborts the apply in flight and releases waiting submitters', async () => {
    const applier = manualApplier();
    const runner = new ProjectRunner({ applier, reconcilePeriodMs: 60_000, logger: pino({ level: 'silent' }), onResult: () => undefined });
    const first = runner.submit(snap('c1'));
    await waitFor(() => applier.calls.length === 1, 'the apply');
    const waiting = runner.submit(snap('c2'));
    const stopping = runner.stop();
    expect(applier.calls[0]!.signal!.aborted).toBe(true);
    applier.calls[0]!.finish();
    await Promise.all([stopping, first, waiting]);
    expect(applier.calls).toHaveLength(1);
  });
});

describe('ProjectRunner and unreadable projects', () => {
  test('a snapshot without a commit is applied (reported) but the reconcile keeps applying the last one with files', async () => {
    const applier = manualApplier();
    const runner = new ProjectRunner({ applier, reconcilePeriodMs: 100, logger: pino({ level: 'silent' }), onResult: () => undefined });
    try {
      const first = runner.submit(snap('good'));
      await waitFor(() => applier.calls.length === 1, 'the first apply');
      applier.calls[0]!.finish();
      await first;
      const broken = runner.submit({ ...snap(''), complete: false });
      await waitFor(() => applier.calls.length === 2, 'the unreadable snapshot');
      expect(applier.calls[1]!.commit).toBe('');
      applier.calls[1]!.finish();
      await broken;
      await waitFor(() => applier.calls.length === 3, 'the reconcile', 5000);
      expect(applier.calls[2]!.commit).toBe('good');
      expect(runner.current!.commit).toBe('good');
    } finally {
      const stopping = runner.stop();
      for (const c of applier.calls) c.finish();
      await stopping;
    }
  });
});
