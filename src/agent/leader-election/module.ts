/**
 * agentk's leader_election module: one LeaderElector per agentk, campaigning for the Lease
 * `agentk-<agent id>` (or the name the options give) in agentk's namespace, from the first
 * `onChange` subscription (a feature that needs a leader) until agentk stops. The
 * election is offered to every module as `ctx.leader` (Leadership); features that must run on one
 * pod of the Deployment only (GitOps apply, Flux) start and stop with `onChange`.
 */
import { Gauge, Counter } from 'prom-client';
import type { AgentOptions } from '../app.js';
import type { AgentkModule } from '../module.js';
import type { AgentMetrics } from '../observability/metrics.js';
import { ApiServerClient } from '../kubernetes-api/api-server.js';
import { KubeJson } from '../kubernetes-api/kube-json.js';
import type { KasStreams } from '../tunnel/kas-streams.js';
import type { Logger } from '../../shared/logger.js';
import { LeaderElector, type Leadership } from './leader-elector.js';

export interface LeaderElectionOptions {
  /** The Lease's name (default `agentk-<agent id>`, the id kas gives in its WELCOME). */
  leaseName?: string;
  /** The Lease's namespace (default: POD_NAMESPACE, else `default`). */
  namespace?: string;
  /** Defaults 15 s / 10 s / 2 s, as client-go's. */
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

/** The agent's id from the first session to kas that names it (rejects when `signal` aborts). */
export function agentIdFromKas(kas: KasStreams, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    let unsubscribe: (() => void) | null = null;
    let done = false;
    const finish = (id: number) => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      queueMicrotask(() => unsubscribe?.());
      resolve(id);
    };
    const onAbort = () => {
      done = true;
      unsubscribe?.();
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    unsubscribe = kas.onSession((s) => {
      if (s.agentId !== null) finish(s.agentId);
    });
    if (done) unsubscribe();
  });
}

/**
 * The election agentk shares with its modules: exists from creation (not leading), campaigns once
 * the module starts. `agentId` resolves with the first session to kas.
 */
export class AgentLeadership implements Leadership {
  readonly elector: LeaderElector;
  readonly agentId: Promise<number>;
  private readonly client: ApiServerClient;
  private readonly abort = new AbortController();

  constructor(options: AgentOptions, kas: KasStreams, metrics: AgentMetrics, logger: Logger) {
    const le = options.leaderElection ?? {};
    this.client = new ApiServerClient(options.apiServer, { logger, tokenRefreshMs: options.tokenRefreshMs });
    this.agentId = agentIdFromKas(kas, this.abort.signal);
    this.agentId.catch(() => undefined);
    const name = le.leaseName ? Promise.resolve(le.leaseName) : this.agentId.then((id) => `agentk-${id}`);
    // Rejected when agentk stops before kas named the agent; the elector handles it if it campaigns.
    name.catch(() => undefined);
    const registers = [metrics.registry];
    const isLeader = new Gauge({ name: 'agentk_leader', help: 'Whether this agentk holds the leader election lease (1) or not (0).', registers });
    const transitions = new Counter({ name: 'agentk_leader_transitions_total', help: 'Times this agentk became or stopped being the leader.', registers });
    isLeader.set(0);
    this.elector = new LeaderElector({
      kube: new KubeJson(this.client),
      namespace: le.namespace ?? (options.podNamespace || 'default'),
      name,
      identity: options.podName,
      leaseDurationMs: le.leaseDurationMs,
      renewDeadlineMs: le.renewDeadlineMs,
      retryPeriodMs: le.retryPeriodMs,
      logger,
      onTransition: (leader) => {
        isLeader.set(leader ? 1 : 0);
        transitions.inc();
      },
    });
  }

  get isLeader(): boolean {
    return this.elector.isLeader;
  }

  /**
   * Follows the election. The first listener starts the campaign (once the module runs): an agentk
   * with no feature that needs a leader never touches Leases (and needs no RBAC for them).
   */
  onChange(listener: (isLeader: boolean) => void): () => void {
    const unsubscribe = this.elector.onChange(listener);
    this.wanted = true;
    if (this.started) this.elector.start();
    return unsubscribe;
  }

  private wanted = false;
  private started = false;

  module(): AgentkModule {
    return {
      name: 'leader_election',
      start: async () => {
        this.started = true;
        if (this.wanted) this.elector.start();
      },
      stop: async () => {
        this.abort.abort(new Error('agentk is stopping'));
        await this.elector.stop();
        this.client.close();
      },
    };
  }
}
