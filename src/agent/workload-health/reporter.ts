/**
 * agentk's half of workload health: follows Deployments, StatefulSets, DaemonSets, Pods and Jobs
 * through the informer caches, recomputes the summary (summary.ts) when they change, once changes
 * have settled for `debounceMs` (but at least every `maxWaitMs` under continuous churn), and sends
 * it to kas on a `workload_health` stream when it differs from the last one. Every new session to a
 * kas that serves the type gets the current summary, so a kas that restarted, or another replica,
 * learns it without waiting for a change.
 *
 * The caches are acquired when the first session to a kas serving `workload_health` opens (an older
 * kas never makes agentk watch the cluster for nothing) and released when agentk stops.
 */
import { randomBytes } from 'node:crypto';
import type { V1DaemonSet, V1Deployment, V1Job, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import {
  WORKLOAD_HEALTH_STREAM,
  decodeWorkloadHealthReply,
  encodeWorkloadHealthData,
  encodeWorkloadHealthHead,
  type WorkloadHealthSummary,
} from '../../protocol/workload-health.js';
import type { Logger } from '../../shared/logger.js';
import { RESOURCES, type InformerHandle, type Informers } from '../informers/informers.js';
import type { AgentkModule } from '../module.js';
import type { KasSession, KasStreams } from '../tunnel/kas-streams.js';
import type { WorkloadHealthMetrics } from './metrics.js';
import { DEFAULT_SUMMARY_LIMITS, sameSummary, summarize, type SummaryLimits } from './summary.js';

export interface WorkloadHealthOptions {
  /** Quiet time after a change before the summary is recomputed, ms (default 2000). */
  debounceMs?: number;
  /** Longest a change waits for the summary to be recomputed under continuous churn, ms (default 10000). */
  maxWaitMs?: number;
  /** How long a Pod may be Pending, and the caps of the summary (summary.ts). */
  limits?: Partial<SummaryLimits>;
}

export const DEFAULT_DEBOUNCE_MS = 2000;
export const DEFAULT_MAX_WAIT_MS = 10_000;

interface Caches {
  deployments: InformerHandle<V1Deployment>;
  statefulSets: InformerHandle<V1StatefulSet>;
  daemonSets: InformerHandle<V1DaemonSet>;
  pods: InformerHandle<V1Pod>;
  jobs: InformerHandle<V1Job>;
}

/** A summary ready to send: the same bytes go to every session. */
interface Current {
  summary: WorkloadHealthSummary;
  seq: number;
  data: Uint8Array;
}

export class WorkloadHealthReporter implements AgentkModule {
  readonly name = 'workload_health';
  private readonly debounceMs: number;
  private readonly maxWaitMs: number;
  private readonly limits: SummaryLimits;
  private readonly instance = randomBytes(8).toString('hex');
  private readonly abort = new AbortController();
  private caches: Caches | null = null;
  private synced = false;
  private stopOnSession: (() => void) | null = null;
  private readonly stopListening: Array<() => void> = [];
  private debounceTimer: NodeJS.Timeout | null = null;
  private firstChangeAt: number | null = null;
  private wakeTimer: NodeJS.Timeout | null = null;
  private current: Current | null = null;
  private seq = 0;
  /** One stream towards kas at a time; a newer summary waits for it and goes next. */
  private sending: Promise<void> | null = null;
  private sendAgain = false;

  constructor(
    private readonly deps: { informers: Informers; kas: KasStreams; logger: Logger; metrics: WorkloadHealthMetrics; now?: () => number },
    options: WorkloadHealthOptions = {},
  ) {
    this.debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.maxWaitMs = Math.max(options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS, this.debounceMs);
    this.limits = { ...DEFAULT_SUMMARY_LIMITS, ...options.limits };
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  async start(): Promise<void> {
    let told = false;
    this.stopOnSession = this.deps.kas.onSession((session) => {
      if (!session.features.has(WORKLOAD_HEALTH_STREAM)) {
        if (!told) this.deps.logger.info({ connectionId: session.connectionId }, 'kas does not serve workload_health: workload health is not reported to it');
        told = true;
        return;
      }
      this.activate();
      if (this.current) this.sendOn(session, this.current);
    });
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.stopOnSession?.();
    for (const off of this.stopListening.splice(0)) off();
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    if (this.caches) for (const handle of Object.values(this.caches) as InformerHandle[]) handle.release();
    this.caches = null;
    await this.sending?.catch(() => undefined);
  }

  /** Acquires the caches, once; the first summary is made when all of them are filled. */
  private activate(): void {
    if (this.caches || this.abort.signal.aborted) return;
    const { informers } = this.deps;
    const caches: Caches = {
      deployments: informers.acquire<V1Deployment>(RESOURCES.deployments),
      statefulSets: informers.acquire<V1StatefulSet>(RESOURCES.statefulSets),
      daemonSets: informers.acquire<V1DaemonSet>(RESOURCES.daemonSets),
      pods: informers.acquire<V1Pod>(RESOURCES.pods),
      jobs: informers.acquire<V1Job>(RESOURCES.jobs),
    };
    this.caches = caches;
    const handles = Object.values(caches) as InformerHandle[];
    for (const handle of handles) this.stopListening.push(handle.on(() => this.changed()));
    this.deps.logger.info('following Deployments, StatefulSets, DaemonSets, Pods and Jobs for workload health');
    Promise.all(handles.map((h) => h.waitForSync(this.abort.signal))).then(
      () => {
        this.synced = true;
        this.recompute();
      },
      (err: unknown) => {
        if (!this.abort.signal.aborted) this.deps.logger.error({ err }, 'workload health caches did not fill');
      },
    );
  }

  /** A cached object changed: recompute once changes settle, or at the latest maxWaitMs after the first. */
  private changed(): void {
    if (!this.synced || this.abort.signal.aborted) return;
    const now = this.now();
    this.firstChangeAt ??= now;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    const delay = Math.max(0, Math.min(this.debounceMs, this.firstChangeAt + this.maxWaitMs - now));
    this.debounceTimer = setTimeout(() => this.recompute(), delay);
  }

  private recompute(): void {
    if (!this.caches || this.abort.signal.aborted) return;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.debounceTimer = null;
    this.firstChangeAt = null;
    const now = this.now();
    const objects = {
      deployments: this.caches.deployments.list(),
      statefulSets: this.caches.statefulSets.list(),
      daemonSets: this.caches.daemonSets.list(),
      pods: this.caches.pods.list(),
      jobs: this.caches.jobs.list(),
    };
    let limits = this.limits;
    for (;;) {
      const { summary, nextChangeAt } = summarize(objects, now, limits);
      let data: Uint8Array;
      try {
        data = encodeWorkloadHealthData(summary);
      } catch (err) {
        // Long names and messages can outgrow the size limit within the item caps: list fewer.
        if (limits.maxTotal <= 1) {
          this.deps.logger.error({ err }, 'workload health summary cannot be encoded; it is not sent');
          return;
        }
        limits = { ...limits, maxTotal: Math.floor(limits.maxTotal / 2) };
        continue;
      }
      this.wakeAt(nextChangeAt, now);
      this.deps.metrics.problems.set(summary.namespaces.reduce((n, ns) => n + ns.problems.length + ns.omitted, 0) + summary.omitted_problems);
      if (this.current && sameSummary(this.current.summary, summary)) return;
      this.current = { summary, seq: this.seq++, data };
      this.send();
      return;
    }
  }

  /** A Pending Pod crosses the threshold at `at` without any change to tell: recompute then. */
  private wakeAt(at: number | null, now: number): void {
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    if (at === null) return;
    this.wakeTimer = setTimeout(() => this.recompute(), Math.min(Math.max(0, at - now) + 50, 0x7fffffff));
  }

  /** Sends the current summary on some session serving the type (waiting for one), newest last. */
  private send(): void {
    if (this.sending) {
      this.sendAgain = true;
      return;
    }
    this.sending = (async () => {
      do {
        this.sendAgain = false;
        const current = this.current!;
        try {
          const stream = await this.deps.kas.open(encodeWorkloadHealthHead({ instance: this.instance, seq: current.seq }), { data: current.data, end: true, signal: this.abort.signal });
          await this.awaitReply(stream, current);
        } catch (err) {
          if (this.abort.signal.aborted) return;
          // A session that closed first is not a loss: every new session gets the current summary.
          this.deps.logger.warn({ err, seq: current.seq }, 'workload health summary not delivered');
          this.deps.metrics.sent.inc({ outcome: 'error' });
        }
      } while (this.sendAgain && !this.abort.signal.aborted);
    })().finally(() => {
      this.sending = null;
    });
  }

  private sendOn(session: KasSession, current: Current): void {
    let stream: TunnelStream;
    try {
      stream = session.open(encodeWorkloadHealthHead({ instance: this.instance, seq: current.seq }), { data: current.data, end: true });
    } catch (err) {
      this.deps.logger.debug({ err, connectionId: session.connectionId }, 'workload health summary not sent on a new session');
      return;
    }
    this.awaitReply(stream, current).catch((err: unknown) => {
      this.deps.metrics.sent.inc({ outcome: 'error' });
      this.deps.logger.warn({ err, connectionId: session.connectionId, seq: current.seq }, 'workload health summary not delivered');
    });
  }

  private async awaitReply(stream: TunnelStream, current: Current): Promise<void> {
    const head = await replyOf(stream);
    try {
      decodeWorkloadHealthReply(head);
    } catch (err) {
      stream.reset('PROTOCOL_ERROR', (err as Error).message);
      throw err;
    }
    stream.resume();
    this.deps.metrics.sent.inc({ outcome: 'ok' });
    this.deps.logger.debug({ seq: current.seq, namespaces: current.summary.namespaces.length }, 'workload health summary delivered');
  }
}
