/** agentk's GitOps metrics (docs/agentk.md lists them). */
import { Counter, Histogram } from 'prom-client';
import type { AgentMetrics } from '../observability/metrics.js';
import type { ApplyResult } from './applier.js';

export class GitopsMetrics {
  /** Applies by result: ok (nothing failed), failed (something failed). */
  readonly applies: Counter<'result'>;
  /** Objects by what happened to them. */
  readonly objects: Counter<'action'>;
  /** Problems by code. */
  readonly errors: Counter<'code'>;
  readonly duration: Histogram;

  constructor(metrics: AgentMetrics) {
    const registers = [metrics.registry];
    this.applies = new Counter({ name: 'agentk_gitops_applies_total', help: 'Applies of manifest projects, by result (ok, failed).', labelNames: ['result'], registers });
    this.objects = new Counter({ name: 'agentk_gitops_objects_total', help: 'Objects handled by GitOps applies, by action (created, configured, unchanged, failed, pruned, ...).', labelNames: ['action'], registers });
    this.errors = new Counter({ name: 'agentk_gitops_errors_total', help: 'Problems reported by GitOps applies, by code.', labelNames: ['code'], registers });
    this.duration = new Histogram({ name: 'agentk_gitops_apply_duration_seconds', help: 'How long an apply of a manifest project took.', buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers });
  }

  record(result: ApplyResult): void {
    this.applies.inc({ result: result.failed > 0 || result.errors.length > 0 ? 'failed' : 'ok' });
    const byAction = new Map<string, number>();
    for (const o of result.objects) byAction.set(o.action, (byAction.get(o.action) ?? 0) + 1);
    for (const [action, n] of byAction) this.objects.inc({ action }, n);
    for (const e of result.errors) this.errors.inc({ code: e.code });
    this.duration.observe(result.durationMs / 1000);
  }
}
