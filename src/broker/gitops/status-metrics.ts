/** kas's metrics of GitOps apply results (docs/configuration.md lists them). */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { GitopsStatusWire } from '../../protocol/gitops-status.js';

export class GitopsStatusMetrics {
  /** Status reports agents sent, by result: ok, failed (something failed), invalid (reset). */
  readonly reports: Counter<'result'>;
  /** Objects in the reports, by action. */
  readonly objects: Counter<'action'>;
  /** Problems in the reports, by code. */
  readonly failures: Counter<'code'>;
  /** Results kept. */
  readonly kept: Gauge;
  /** Failed Redis commands (the replica then answers from its own memory). */
  readonly redisErrors: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.reports = new Counter({ name: 'kas_gitops_status_reports_total', help: 'GitOps apply results agents reported, by result (ok, failed, invalid).', labelNames: ['result'], registers });
    this.objects = new Counter({ name: 'kas_gitops_objects_total', help: 'Objects in GitOps apply results, by action (applied = created or configured, unchanged, pruned, failed).', labelNames: ['action'], registers });
    this.failures = new Counter({ name: 'kas_gitops_apply_errors_total', help: 'Problems in GitOps apply results, by code.', labelNames: ['code'], registers });
    this.redisErrors = new Counter({ name: 'kas_gitops_status_redis_errors_total', help: 'Failed Redis commands of the GitOps apply results (the replica then answers from its own memory).', registers });
    this.kept = new Gauge({ name: 'kas_gitops_status_results', help: 'GitOps apply results kept for the API (latest per agent and project).', registers });
  }

  record(s: GitopsStatusWire): void {
    this.reports.inc({ result: s.failed > 0 || s.errors.length > 0 ? 'failed' : 'ok' });
    if (s.applied) this.objects.inc({ action: 'applied' }, s.applied);
    if (s.unchanged) this.objects.inc({ action: 'unchanged' }, s.unchanged);
    if (s.pruned) this.objects.inc({ action: 'pruned' }, s.pruned);
    if (s.failed) this.objects.inc({ action: 'failed' }, s.failed);
    for (const e of s.errors) this.failures.inc({ code: e.code });
  }
}
