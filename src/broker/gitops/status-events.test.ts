import type { GitopsStatusWire } from '../../protocol/gitops-status.js';
import { MAX_OBJECT_EVENTS, statusEvents } from './status-events.js';

function status(over: Partial<GitopsStatusWire> = {}): GitopsStatusWire {
  return {
    project_id: 'demo/apps',
    commit: '0123456789abcdef0123',
    trigger: 'snapshot',
    dry_run: 'none',
    started_at: '2026-12-03T06:00:00Z',
    duration_ms: 40,
    applied: 0,
    unchanged: 3,
    pruned: 0,
    failed: 0,
    objects: [],
    objects_omitted: 0,
    errors: [],
    errors_omitted: 0,
    ...over,
  };
}

describe('GitOps results as cluster events', () => {
  test('a summary for a new commit; nothing for a reconcile that changed nothing', () => {
    expect(statusEvents(status())).toEqual([expect.objectContaining({ source: 'gitops', type: 'Normal', reason: 'Applied', message: 'demo/apps at 0123456789ab: 0 applied, 3 unchanged, 0 pruned, 0 failed in 40 ms (snapshot)' })]);
    expect(statusEvents(status({ trigger: 'reconcile' }))).toEqual([]);
    expect(statusEvents(status({ trigger: 'reconcile', applied: 1 }))).toHaveLength(1);
  });

  test('failed objects, pruned objects and broken files get their own events, bounded', () => {
    const objects = Array.from({ length: 30 }, (_, i) => ({ group: 'apps', kind: 'Deployment', namespace: 'web', name: `d${i}`, action: 'failed' as const, source: 'd.yaml', reason: '422: invalid' }));
    const events = statusEvents(
      status({
        failed: 31,
        objects: [{ group: '', kind: 'ConfigMap', namespace: 'x', name: 'old', action: 'pruned' }, ...objects],
        errors: [{ code: 'GITOPS_INVALID_MANIFEST', message: 'not valid YAML', path: 'broken.yaml' }],
      }),
    );
    expect(events[0]).toMatchObject({ type: 'Warning', reason: 'ApplyFailed' });
    expect(events[1]).toMatchObject({ type: 'Normal', reason: 'Pruned', object: { kind: 'ConfigMap', namespace: 'x', name: 'old' } });
    expect(events[2]).toMatchObject({ type: 'Warning', reason: 'ApplyFailed', object: { kind: 'Deployment.apps', namespace: 'web', name: 'd0' }, message: 'demo/apps at 0123456789ab, d.yaml: 422: invalid' });
    expect(events).toHaveLength(1 + MAX_OBJECT_EVENTS);
    const onlyFile = statusEvents(status({ failed: 1, errors: [{ code: 'GITOPS_INVALID_MANIFEST', message: 'not valid YAML', path: 'broken.yaml' }] }));
    expect(onlyFile[1]).toMatchObject({ type: 'Warning', reason: 'InvalidManifest', message: expect.stringContaining('broken.yaml') });
  });
});
