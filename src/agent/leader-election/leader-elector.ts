/**
 * Leader election among the agentk pods of one agent, with a `coordination.k8s.io/v1` Lease in
 * agentk's namespace, the way client-go's leaderelection package does it:
 *
 * - A candidate reads the Lease. When nobody holds it, when its holder released it (empty
 *   `holderIdentity`), or when the record has not changed for `leaseDurationMs` as timed on this
 *   pod's own clock (never the holder's `renewTime`, so clock skew between nodes does not matter),
 *   it writes itself in as holder. Every write carries the resourceVersion it read: of two
 *   candidates racing, the API server lets exactly one through (409 for the other).
 * - The leader renews every `retryPeriodMs`. When it could not renew for `renewDeadlineMs`
 *   (shorter than the lease duration) it stops leading before anyone else may take over.
 * - `stop()` releases the lease (empty holder) so a successor takes over at its next try instead
 *   of waiting out the lease.
 *
 *   const elector = new LeaderElector({ kube, namespace: 'gitlab-agent', name: 'agentk-1', identity: podName, logger });
 *   elector.onChange((leader) => leader ? startApplying() : stopApplying());
 *   elector.start();
 *   ...
 *   await elector.stop();
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../../shared/logger.js';
import { kubeErrorMessage, type KubeJson } from '../kubernetes-api/kube-json.js';

export const DEFAULT_LEASE_DURATION_MS = 15_000;
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
export const DEFAULT_RETRY_PERIOD_MS = 2_000;

/** What features that must run on one pod only (GitOps apply, Flux) see of the election. */
export interface Leadership {
  /** True while this pod holds the lease. */
  readonly isLeader: boolean;
  /** Calls `listener(isLeader)` on every change (not for the current state); returns the unsubscribe function. */
  onChange(listener: (isLeader: boolean) => void): () => void;
}

export interface LeaderElectorOptions {
  kube: KubeJson;
  namespace: string;
  /** The Lease's name, or a promise of it (agentk learns its agent id from kas). */
  name: string | Promise<string>;
  /** This candidate's identity (the pod name); default: host name and a random suffix. */
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  logger: Logger;
  /** Monotonic clock, ms (tests). */
  now?: () => number;
  /** Called on every change with the new state (metrics). */
  onTransition?: (isLeader: boolean) => void;
}

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface LeaseObject {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string; labels?: Record<string, string> };
  spec: LeaseSpec;
}

/** A MicroTime as the API server wants it: RFC 3339 with microseconds. */
function microTime(date = new Date()): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export function validateElectionTimings(leaseDurationMs: number, renewDeadlineMs: number, retryPeriodMs: number): string | null {
  if (!(leaseDurationMs >= 1000)) return 'the lease duration must be at least 1s';
  if (!(renewDeadlineMs < leaseDurationMs)) return 'the renew deadline must be shorter than the lease duration';
  if (!(retryPeriodMs > 0) || !(retryPeriodMs < renewDeadlineMs)) return 'the retry period must be shorter than the renew deadline';
  return null;
}

export class LeaderElector implements Leadership {
  readonly identity: string;
  readonly namespace: string;
  private leaseName = '';
  private readonly o: Required<Pick<LeaderElectorOptions, 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs'>> & LeaderElectorOptions;
  private readonly now: () => number;
  private leader = false;
  private readonly listeners = new Set<(isLeader: boolean) => void>();
  /** The last record seen (as JSON) and when this pod first saw it. */
  private observed: { record: string; holder: string; at: number } | null = null;
  private lastRenew = 0;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private abort = new AbortController();
  private stopped = false;

  constructor(options: LeaderElectorOptions) {
    this.o = {
      ...options,
      leaseDurationMs: options.leaseDurationMs ?? DEFAULT_LEASE_DURATION_MS,
      renewDeadlineMs: options.renewDeadlineMs ?? DEFAULT_RENEW_DEADLINE_MS,
      retryPeriodMs: options.retryPeriodMs ?? DEFAULT_RETRY_PERIOD_MS,
    };
    const problem = validateElectionTimings(this.o.leaseDurationMs, this.o.renewDeadlineMs, this.o.retryPeriodMs);
    if (problem) throw new Error(`leader election: ${problem}`);
    this.identity = options.identity && options.identity !== '' ? options.identity : `${hostname()}-${randomBytes(4).toString('hex')}`;
    this.namespace = options.namespace;
    this.now = options.now ?? (() => performance.now());
  }

  get isLeader(): boolean {
    return this.leader;
  }

  /** The Lease's name ('' until known). */
  get name(): string {
    return this.leaseName;
  }

  onChange(listener: (isLeader: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Starts campaigning (returns at once; the first try runs as soon as the lease name is known). */
  start(): void {
    if (this.running) return;
    this.running = (async () => {
      try {
        this.leaseName = await this.o.name;
      } catch (err) {
        if (!this.stopped) this.o.logger.error({ err }, 'leader election: no lease name; not campaigning');
        return;
      }
      if (this.stopped) return;
      this.o.logger.info({ lease: `${this.namespace}/${this.leaseName}`, identity: this.identity }, 'leader election: campaigning');
      await this.loop();
    })();
  }

  /** Stops campaigning; a leader releases the lease first so a successor takes over at once. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort(new Error('leader election stopped'));
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
    await this.running;
    if (this.leader) {
      this.setLeader(false);
      await this.release();
    }
  }

  private wake: (() => void) | null = null;

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        this.wake = null;
        resolve();
      };
      this.wake = wake;
      this.timer = setTimeout(wake, ms);
    });
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew();
      } catch (err) {
        if (this.stopped) break;
        this.o.logger.warn({ err, lease: this.leaseName }, 'leader election: cannot read or write the lease');
      }
      if (this.stopped) break;
      if (ok) {
        this.lastRenew = this.now();
        if (!this.leader) {
          this.o.logger.info({ lease: `${this.namespace}/${this.leaseName}`, identity: this.identity }, 'leader election: became the leader');
          this.setLeader(true);
        }
      } else if (this.leader && this.now() - this.lastRenew >= this.o.renewDeadlineMs) {
        this.o.logger.warn({ lease: `${this.namespace}/${this.leaseName}`, identity: this.identity }, 'leader election: could not renew the lease in time; no longer the leader');
        this.setLeader(false);
      }
      await this.sleep(this.o.retryPeriodMs);
    }
  }

  private setLeader(value: boolean): void {
    if (this.leader === value) return;
    this.leader = value;
    this.o.onTransition?.(value);
    for (const listener of [...this.listeners]) {
      try {
        listener(value);
      } catch (err) {
        this.o.logger.error({ err }, 'leader election: a listener failed');
      }
    }
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.namespace)}/leases`;
  }

  /** One round: true when this pod holds the lease after it. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const kube = this.o.kube;
    const requestOptions = { signal: this.abort.signal, timeoutMs: Math.max(1000, this.o.retryPeriodMs * 2) };
    const leaseSeconds = Math.max(1, Math.ceil(this.o.leaseDurationMs / 1000));
    const nowTime = microTime();
    const got = await kube.request('GET', `${this.path}/${encodeURIComponent(this.leaseName)}`, undefined, requestOptions);
    if (got.status === 404) {
      const lease: LeaseObject = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.leaseName, namespace: this.namespace, labels: { 'app.kubernetes.io/managed-by': 'agentk' } },
        spec: { holderIdentity: this.identity, leaseDurationSeconds: leaseSeconds, acquireTime: nowTime, renewTime: nowTime, leaseTransitions: 0 },
      };
      const created = await kube.request('POST', this.path, lease, requestOptions);
      if (created.status === 201 || created.status === 200) {
        this.observe(created.json as LeaseObject);
        return true;
      }
      if (created.status === 409) return false; // another candidate created it first
      throw new Error(`cannot create the lease: ${kubeErrorMessage(created)}`);
    }
    if (got.status !== 200) throw new Error(`cannot read the lease: ${kubeErrorMessage(got)}`);
    const current = got.json as LeaseObject;
    const spec = current.spec ?? {};
    this.observe(current);
    const holder = spec.holderIdentity ?? '';
    const held = holder !== '' && holder !== this.identity;
    if (held) {
      const durationMs = (spec.leaseDurationSeconds ?? leaseSeconds) * 1000;
      // The record has changed within the holder's lease duration as timed here: it is alive.
      if (this.observed && this.now() - this.observed.at < durationMs) return false;
    }
    const takingOver = holder !== this.identity;
    const next: LeaseObject = {
      ...current,
      spec: {
        ...spec,
        holderIdentity: this.identity,
        leaseDurationSeconds: leaseSeconds,
        renewTime: nowTime,
        acquireTime: takingOver ? nowTime : spec.acquireTime ?? nowTime,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (takingOver && holder !== '' ? 1 : 0),
      },
    };
    const updated = await kube.request('PUT', `${this.path}/${encodeURIComponent(this.leaseName)}`, next, requestOptions);
    if (updated.status === 200) {
      this.observe(updated.json as LeaseObject);
      if (takingOver) this.o.logger.info({ previousHolder: holder || null }, 'leader election: acquired the lease');
      return true;
    }
    if (updated.status === 409) return false; // someone wrote it since we read it
    throw new Error(`cannot update the lease: ${kubeErrorMessage(updated)}`);
  }

  private observe(lease: LeaseObject): void {
    const spec = lease?.spec ?? {};
    const record = JSON.stringify([spec.holderIdentity ?? '', spec.renewTime ?? '', spec.acquireTime ?? '', spec.leaseDurationSeconds ?? 0, spec.leaseTransitions ?? 0]);
    if (!this.observed || this.observed.record !== record) this.observed = { record, holder: spec.holderIdentity ?? '', at: this.now() };
  }

  /** Gives the lease up (empty holder, 1 s duration) if this pod still holds it. */
  private async release(): Promise<void> {
    const kube = this.o.kube;
    try {
      const got = await kube.request('GET', `${this.path}/${encodeURIComponent(this.leaseName)}`, undefined, { timeoutMs: 5000 });
      if (got.status !== 200) return;
      const current = got.json as LeaseObject;
      if (current.spec?.holderIdentity !== this.identity) return;
      const released: LeaseObject = { ...current, spec: { ...current.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime() } };
      const res = await kube.request('PUT', `${this.path}/${encodeURIComponent(this.leaseName)}`, released, { timeoutMs: 5000 });
      if (res.status === 200) this.o.logger.info({ lease: `${this.namespace}/${this.leaseName}` }, 'leader election: released the lease');
      else this.o.logger.warn({ status: res.status }, 'leader election: could not release the lease; a successor waits out its duration');
    } catch (err) {
      this.o.logger.warn({ err }, 'leader election: could not release the lease; a successor waits out its duration');
    }
  }
}
