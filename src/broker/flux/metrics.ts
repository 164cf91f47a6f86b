/** Metrics of the Flux git-push feature (kas half). */
import { Counter, Gauge, type Registry } from 'prom-client';

export class FluxMetrics {
  readonly streams: Gauge;
  readonly subscribedProjects: Gauge;
  readonly notifications: Counter;
  readonly refusals: Counter<'reason'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.streams = new Gauge({ name: 'kas_flux_streams', help: 'Open flux_git_push streams of agents connected to this replica.', registers });
    this.subscribedProjects = new Gauge({ name: 'kas_flux_subscribed_projects', help: 'Projects followed over the open flux_git_push streams (a project followed by two streams counts twice).', registers });
    this.notifications = new Counter({ name: 'kas_flux_notifications_sent_total', help: 'Git-push notifications sent to agents over flux_git_push streams.', registers });
    this.refusals = new Counter({ name: 'kas_flux_project_refusals_total', help: 'Subscribed projects refused, by reason: access (GitLab says the agent may not read it), unavailable (GitLab could not answer).', labelNames: ['reason'], registers });
  }
}
