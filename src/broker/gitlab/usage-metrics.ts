/**
 * Usage metrics GitLab collects from kas (`POST usage_metrics`): counters of proxy requests by
 * credential kind and the unique users and agents behind them. Sent every period and on shutdown;
 * what was sent is subtracted only after GitLab accepted it, so nothing is lost or counted twice.
 */
import type { Logger } from '../../shared/logger.js';
import type { ProxyDecision } from '../auth/types.js';
import type { GitLabClient } from './client.js';

const VIA: Record<ProxyDecision['credential'], string | null> = {
  ci: 'ci_access',
  pat: 'pat_access',
  session_cookie: 'user_access',
  gitlab_jwt: null,
};

export class UsageMetrics {
  private readonly counters = new Map<string, number>();
  private readonly unique = new Map<string, Set<number>>();
  private timer: NodeJS.Timeout | null = null;
  private sending: Promise<void> | null = null;

  constructor(
    private readonly client: GitLabClient,
    private readonly logger: Logger,
  ) {}

  /** Counts one proxy request. */
  record(decision: ProxyDecision, userId: number | null): void {
    this.add('k8s_api_proxy_request', 1);
    const via = VIA[decision.credential];
    if (!via) return;
    this.add(`k8s_api_proxy_requests_via_${via}`, 1);
    if (userId !== null) this.addUnique(`k8s_api_proxy_requests_unique_users_via_${via}`, userId);
    this.addUnique(`k8s_api_proxy_requests_unique_agents_via_${via}`, decision.agentId);
  }

  /** Counts `n` events of a feature's counter (`gitops_sync`, ...). */
  increment(name: string, n = 1): void {
    this.add(name, n);
  }

  private add(name: string, n: number): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + n);
  }

  private addUnique(name: string, id: number): void {
    let set = this.unique.get(name);
    if (!set) {
      set = new Set();
      this.unique.set(name, set);
    }
    set.add(id);
  }

  start(periodMs: number): void {
    this.timer = setInterval(() => void this.flush(), periodMs);
    this.timer.unref();
  }

  /** Stops the timer and sends what is left (once). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }

  /** Sends the current counts; on success subtracts exactly what was sent. */
  flush(): Promise<void> {
    if (this.sending) return this.sending;
    if (this.counters.size === 0 && this.unique.size === 0) return Promise.resolve();
    const counters = Object.fromEntries(this.counters);
    const unique = Object.fromEntries([...this.unique].map(([k, v]) => [k, [...v]]));
    this.sending = this.client
      .postUsageMetrics({ counters, unique_counters: unique })
      .then(
        () => {
          for (const [k, n] of Object.entries(counters)) {
            const left = (this.counters.get(k) ?? 0) - n;
            if (left > 0) this.counters.set(k, left);
            else this.counters.delete(k);
          }
          for (const [k, ids] of Object.entries(unique)) {
            const set = this.unique.get(k);
            if (!set) continue;
            for (const id of ids) set.delete(id);
            if (set.size === 0) this.unique.delete(k);
          }
        },
        (err: unknown) => this.logger.warn({ err }, 'could not send usage metrics to GitLab; they are kept for the next attempt'),
      )
      .finally(() => {
        this.sending = null;
      });
    return this.sending;
  }
}
