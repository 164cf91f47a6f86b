import { TunnelError } from './errors.js';
import { decodeGitopsStatus, decodeGitopsStatusHead, encodeGitopsStatus, encodeGitopsStatusHead, MAX_GITOPS_STATUS_BYTES, MAX_STATUS_OBJECTS, type GitopsStatusWire } from './gitops-status.js';

function status(over: Partial<GitopsStatusWire> = {}): GitopsStatusWire {
  return {
    project_id: 'group/manifests',
    commit: 'a'.repeat(40),
    trigger: 'snapshot',
    dry_run: 'none',
    started_at: '2026-12-03T06:00:00.000Z',
    duration_ms: 1234,
    applied: 2,
    unchanged: 50,
    pruned: 1,
    failed: 1,
    prune_skipped: 'an object could not be applied',
    objects: [
      { group: '', kind: 'ConfigMap', namespace: 'default', name: 'a', action: 'created', source: 'cm.yaml' },
      { group: 'apps', kind: 'Deployment', namespace: 'web', name: 'web', action: 'configured', adopted: true },
      { group: '', kind: 'Service', namespace: 'default', name: 'old', action: 'pruned' },
      { group: '', kind: 'ConfigMap', namespace: 'default', name: 'bad', action: 'failed', reason: '422: invalid' },
    ],
    objects_omitted: 0,
    errors: [{ code: 'GITOPS_APPLY_FAILED', message: '422: invalid', path: 'bad.yaml', object: 'ConfigMap default/bad' }],
    errors_omitted: 0,
    ...over,
  };
}

const head = { projectId: 'group/manifests' };
const decode = (doc: unknown) => decodeGitopsStatus(Buffer.from(JSON.stringify(doc)), head);

describe('gitops_status wire format', () => {
  test('round trip', () => {
    expect(decodeGitopsStatusHead(encodeGitopsStatusHead(head))).toEqual(head);
    expect(decodeGitopsStatus(encodeGitopsStatus(status()), head)).toEqual(status());
  });

  test('the encoder bounds objects and texts', () => {
    const many = Array.from({ length: MAX_STATUS_OBJECTS + 10 }, (_, i) => ({ group: '', kind: 'ConfigMap', namespace: 'x', name: `cm-${i}`, action: 'created' as const, reason: 'r'.repeat(5000) }));
    const data = encodeGitopsStatus(status({ objects: many }));
    expect(data.byteLength).toBeLessThanOrEqual(MAX_GITOPS_STATUS_BYTES);
    const decoded = decodeGitopsStatus(data, head);
    expect(decoded.objects.length).toBeGreaterThan(0);
    expect(decoded.objects.length + decoded.objects_omitted).toBe(many.length);
    expect(decoded.objects[0]!.reason!.length).toBeLessThanOrEqual(1024);
    // Short ones all fit.
    const small = decodeGitopsStatus(encodeGitopsStatus(status({ objects: many.map((o) => ({ ...o, reason: undefined })) })), head);
    expect(small.objects).toHaveLength(MAX_STATUS_OBJECTS);
    expect(small.objects_omitted).toBe(10);
  });

  test.each([
    ['not JSON', Buffer.from('{nope')],
    ['an array', Buffer.from('[]')],
    ['too large', Buffer.alloc(MAX_GITOPS_STATUS_BYTES + 1, 0x20)],
  ])('refuses %s', (_what, data) => {
    expect(() => decodeGitopsStatus(data, head)).toThrow(TunnelError);
  });

  test.each<[string, Record<string, unknown>]>([
    ['another project than the head', { project_id: 'other' }],
    ['a negative count', { applied: -1 }],
    ['a fractional count', { pruned: 1.5 }],
    ['an unknown trigger', { trigger: 'cron' }],
    ['an unknown dry run', { dry_run: 'maybe' }],
    ['a bad time', { started_at: 'yesterday' }],
    ['objects that are not a list', { objects: {} }],
    ['too many objects', { objects: Array.from({ length: MAX_STATUS_OBJECTS + 1 }, () => ({ group: '', kind: 'A', namespace: '', name: 'a', action: 'created' })) }],
    ['an unknown action', { objects: [{ group: '', kind: 'A', namespace: '', name: 'a', action: 'exploded' }] }],
    ['a non-boolean adopted', { objects: [{ group: '', kind: 'A', namespace: '', name: 'a', action: 'created', adopted: 'yes' }] }],
    ['a long name', { objects: [{ group: '', kind: 'A', namespace: '', name: 'a'.repeat(300), action: 'created' }] }],
    ['an error without message', { errors: [{ code: 'X' }] }],
    ['a long error message', { errors: [{ code: 'X', message: 'm'.repeat(2000) }] }],
  ])('refuses %s with PROTOCOL_ERROR', (_what, change) => {
    let err: unknown;
    try {
      decode({ ...status(), ...change });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TunnelError);
    expect((err as TunnelError).code).toBe('PROTOCOL_ERROR');
  });

  test('refuses heads without a project', () => {
    expect(() => decodeGitopsStatusHead({ t: 'gitops_status' })).toThrow(/project_id/);
    expect(() => decodeGitopsStatusHead({ t: 'gitops_status', project_id: 'x'.repeat(2000) })).toThrow(/project_id/);
    expect(() => decodeGitopsStatusHead({ t: 'other', project_id: 'x' })).toThrow(/stream type/);
  });
});
