/** Metrics of the GitOps manifest source. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export class GitopsMetrics {
  readonly polls: Counter<'result'>;
  readonly snapshotsSent: Counter;
  readonly errors: Counter<'code'>;
  readonly streams: Gauge;
  readonly projects: Gauge;
  readonly readSeconds: Histogram;

  constructor(registry: Registry) {
    const registers = [registry];
    this.polls = new Counter({ name: 'kas_gitops_polls_total', help: 'Polls of manifest projects, by result: changed (a new snapshot), unchanged, failed (kept the last snapshot).', labelNames: ['result'], registers });
    this.snapshotsSent = new Counter({ name: 'kas_gitops_snapshots_sent_total', help: 'Manifest snapshots (commits) sent to agentk over gitops_manifests streams.', registers });
    this.errors = new Counter({ name: 'kas_gitops_errors_total', help: 'Problems found while reading manifest projects, by code (MANIFEST_*).', labelNames: ['code'], registers });
    this.streams = new Gauge({ name: 'kas_gitops_streams', help: 'Open gitops_manifests streams.', registers });
    this.projects = new Gauge({ name: 'kas_gitops_projects', help: 'Manifest projects polled by this kas (per connected agent).', registers });
    this.readSeconds = new Histogram({ name: 'kas_gitops_read_duration_seconds', help: 'Time to read a new commit of a manifest project.', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers });
  }
}
