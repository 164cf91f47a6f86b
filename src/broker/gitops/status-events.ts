/**
 * GitOps apply results as cluster events (the cluster events stream, source `gitops`): one summary
 * per apply that changed or failed something (or brought a new commit), and one event per failed,
 * refused or pruned object and per file that did not decode, at most MAX_OBJECT_EVENTS per apply.
 */
import type { GitopsStatusWire } from '../../protocol/gitops-status.js';
import type { ClusterEventInput } from '../cluster-events/service.js';

export const MAX_OBJECT_EVENTS = 20;

export function statusEvents(s: GitopsStatusWire): ClusterEventInput[] {
  const events: ClusterEventInput[] = [];
  const commit = s.commit === '' ? 'no commit' : s.commit.slice(0, 12);
  const troubled = s.failed > 0 || s.errors.length > 0;
  if (s.trigger === 'snapshot' || troubled || s.applied > 0 || s.pruned > 0) {
    events.push({
      source: 'gitops',
      type: troubled ? 'Warning' : 'Normal',
      reason: troubled ? 'ApplyFailed' : 'Applied',
      message: `${s.project_id} at ${commit}${s.dry_run !== 'none' ? ` (dry run: ${s.dry_run})` : ''}: ${s.applied} applied, ${s.unchanged} unchanged, ${s.pruned} pruned, ${s.failed} failed in ${s.duration_ms} ms (${s.trigger})${s.prune_skipped ? `; no prune: ${s.prune_skipped}` : ''}`,
    });
  }
  let budget = MAX_OBJECT_EVENTS;
  for (const o of s.objects) {
    if (budget === 0) break;
    if (o.action !== 'failed' && o.action !== 'prune_failed' && o.action !== 'pruned') continue;
    budget--;
    // The status has the group, not the version: the kind is written kind.group for other groups than the core one.
    const object = { kind: o.group === '' ? o.kind : `${o.kind}.${o.group}`, name: o.name, ...(o.namespace !== '' && { namespace: o.namespace }) };
    events.push({
      source: 'gitops',
      type: o.action === 'pruned' ? 'Normal' : 'Warning',
      reason: o.action === 'pruned' ? 'Pruned' : o.action === 'prune_failed' ? 'PruneFailed' : 'ApplyFailed',
      message: `${s.project_id} at ${commit}${o.source ? `, ${o.source}` : ''}${o.reason ? `: ${o.reason}` : ''}`,
      object,
    });
  }
  for (const e of s.errors) {
    if (budget === 0) break;
    if (e.object !== undefined || e.path === undefined) continue; // object errors are above
    budget--;
    events.push({ source: 'gitops', type: 'Warning', reason: 'InvalidManifest', message: `${s.project_id} at ${commit}, ${e.path}: ${e.code}: ${e.message}` });
  }
  return events;
}
