/** Metrics of agentk's Flux feature (docs/agentk.md lists them). */
import { Counter, Gauge, type Registry } from 'prom-client';

/** How a call of a Receiver's webhook ended. */
export type WebhookResult = 'ok' | 'refused' | 'error' | 'no_webhook_path';

export class FluxAgentMetrics {
  readonly notifications: Counter;
  readonly webhookCalls: Counter<'result'>;
  readonly streamRestarts: Counter<'reason'>;
  readonly gitRepositories: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.notifications = new Counter({ name: 'agentk_flux_notifications_received_total', help: 'Git-push notifications received from kas for followed projects.', registers });
    this.webhookCalls = new Counter({
      name: 'agentk_flux_webhook_calls_total',
      help: 'Calls of Flux Receiver webhooks, by result: ok (2xx), refused (another HTTP answer), error (no answer), no_webhook_path (the Receiver has no status.webhookPath yet).',
      labelNames: ['result'],
      registers,
    });
    this.streamRestarts = new Counter({ name: 'agentk_flux_stream_restarts_total', help: 'flux_git_push streams reopened, by reason: stalled (no heartbeat), closed, error.', labelNames: ['reason'], registers });
    this.gitRepositories = new Gauge({ name: 'agentk_flux_git_repositories', help: 'Flux GitRepositories followed (their URL points at a configured GitLab).', registers });
  }
}
