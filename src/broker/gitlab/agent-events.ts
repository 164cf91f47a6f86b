/**
 * Agent events GitLab collects from kas (`POST agent_events`): agents registering at kas
 * (`register_agent_at_kas`) and the unique users of the Kubernetes API proxy by access kind
 * (`k8s_api_proxy_requests_unique_users_via_{ci,user,pat}_access`, `{user_id, project_id}`).
 * Identical entries within a period are sent once; at most `maxPending` entries wait (newer ones
 * are dropped and counted until GitLab accepted a report). Sent on the usage report period with
 * PeriodicReport: forgotten only after GitLab accepted them.
 */
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../../shared/logger.js';
import type { ProxyDecision } from '../auth/types.js';
import type { GitLabClient } from './client.js';
import { PeriodicReport, type ReportBatch, type ReportSource } from './periodic-report.js';
import { PROXY_ACCESS } from './usage-metrics.js';

/** One `register_agent_at_kas` entry. */
export interface RegisterAgentEvent {
  project_id: number;
  agent_id: number;
  agent_version: string;
  architecture: string;
  kubernetes_version: string;
  extra_telemetry: Record<string, string>;
}

export interface ProxyUserEvent {
  user_id: number;
  project_id: number;
}

export type AgentEventsBody = { events: Record<string, Array<RegisterAgentEvent | ProxyUserEvent>> };

export const REGISTER_AGENT_EVENT = 'register_agent_at_kas';

export class AgentEvents implements ReportSource<AgentEventsBody> {
  /** Pending entries by event name, keyed by their JSON (identical entries are one). */
  private readonly pending = new Map<string, Map<string, RegisterAgentEvent | ProxyUserEvent>>();
  private size = 0;
  private toldFull = false;
  private readonly report: PeriodicReport<AgentEventsBody>;
  private readonly dropped: Counter<'event'>;

  constructor(
    client: Pick<GitLabClient, 'postAgentEvents'>,
    private readonly logger: Logger,
    private readonly maxPending: number,
    registry: Registry,
  ) {
    this.report = new PeriodicReport('agent events', this, (body) => client.postAgentEvents(body), logger);
    this.dropped = new Counter({ name: 'kas_gitlab_agent_events_dropped_total', help: 'Agent events not reported to GitLab because too many were waiting (observability.usage_report_max_events), by event.', labelNames: ['event'], registers: [registry] });
  }

  /** An agent registered (or registered again) on a connection. */
  registerAgent(event: RegisterAgentEvent): void {
    // Keys in a fixed order, so identical registrations are one entry.
    const telemetry = Object.fromEntries(Object.entries(event.extra_telemetry).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    this.add(REGISTER_AGENT_EVENT, { project_id: event.project_id, agent_id: event.agent_id, agent_version: event.agent_version, architecture: event.architecture, kubernetes_version: event.kubernetes_version, extra_telemetry: telemetry });
  }

  /** A proxy request was authorized for a user (CI job's user, or a GitLab user) of a project. */
  proxyUser(decision: ProxyDecision, userId: number | null, projectId: number | null): void {
    const via = PROXY_ACCESS[decision.credential];
    if (!via || userId === null || projectId === null) return;
    this.add(`k8s_api_proxy_requests_unique_users_via_${via}`, { user_id: userId, project_id: projectId });
  }

  private add(name: string, entry: RegisterAgentEvent | ProxyUserEvent): void {
    let entries = this.pending.get(name);
    const key = JSON.stringify(entry);
    if (entries?.has(key)) return;
    if (this.size >= this.maxPending) {
      this.dropped.inc({ event: name });
      if (!this.toldFull) this.logger.warn({ maxPending: this.maxPending }, 'too many agent events wait for GitLab; newer ones are dropped until GitLab accepts a report');
      this.toldFull = true;
      return;
    }
    if (!entries) {
      entries = new Map();
      this.pending.set(name, entries);
    }
    entries.set(key, entry);
    this.size++;
  }

  /** Entries waiting to be reported. */
  get pendingCount(): number {
    return this.size;
  }

  start(periodMs: number): void {
    this.report.start(periodMs);
  }

  stop(): Promise<void> {
    return this.report.stop();
  }

  flush(): Promise<void> {
    return this.report.flush();
  }

  take(): ReportBatch<AgentEventsBody> | null {
    if (this.size === 0) return null;
    const keys = [...this.pending].map(([name, entries]) => [name, [...entries.keys()]] as const);
    const events = Object.fromEntries([...this.pending].map(([name, entries]) => [name, [...entries.values()]]));
    return {
      body: { events },
      accepted: () => {
        for (const [name, sent] of keys) {
          const entries = this.pending.get(name);
          if (!entries) continue;
          for (const key of sent) if (entries.delete(key)) this.size--;
          if (entries.size === 0) this.pending.delete(name);
        }
        this.toldFull = false;
      },
    };
  }
}
