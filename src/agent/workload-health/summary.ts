/**
 * The workload health summary, computed from cached objects: a pure function of the objects and the
 * time, so agentk can recompute it whenever a cache changes and send it only when the result
 * differs. Only namespaces with problems are listed; items are sorted (namespace, kind, name) so the
 * same state always gives the same summary.
 *
 * Problems: Deployments, StatefulSets and DaemonSets with fewer available replicas than desired;
 * Pods with a container waiting in CrashLoopBackOff, ImagePullBackOff or ErrImagePull; Pods Pending
 * for longer than `pendingAfterMs`; Jobs whose Failed condition is True.
 */
import type { V1DaemonSet, V1Deployment, V1Job, V1ObjectMeta, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import {
  MAX_HEALTH_NAMESPACES,
  MAX_HEALTH_PROBLEMS,
  MAX_HEALTH_PROBLEMS_PER_NAMESPACE,
  MAX_HEALTH_TEXT_LENGTH,
  POD_WAITING_PROBLEMS,
  type HealthProblem,
  type NamespaceHealth,
  type PodWaitingProblem,
  type WorkloadHealthSummary,
} from '../../protocol/workload-health.js';

/** The cached objects a summary is made of. */
export interface WorkloadObjects {
  deployments: readonly V1Deployment[];
  statefulSets: readonly V1StatefulSet[];
  daemonSets: readonly V1DaemonSet[];
  pods: readonly V1Pod[];
  jobs: readonly V1Job[];
}

export interface SummaryLimits {
  /** How long a Pod may be Pending before it is a problem, ms (default 5 minutes). */
  pendingAfterMs: number;
  /** Most problems listed per namespace (the rest are counted in `omitted`). */
  maxPerNamespace: number;
  /** Most problems listed in all. */
  maxTotal: number;
  /** Most namespaces listed. */
  maxNamespaces: number;
}

export const DEFAULT_SUMMARY_LIMITS: SummaryLimits = {
  pendingAfterMs: 5 * 60_000,
  maxPerNamespace: 20,
  maxTotal: 200,
  maxNamespaces: 100,
};

export interface SummaryResult {
  summary: WorkloadHealthSummary;
  /**
   * When the summary changes by the passing of time alone (a Pending Pod crosses the threshold),
   * ms since the epoch; null when nothing would. The caller recomputes then.
   */
  nextChangeAt: number | null;
}

const KIND_ORDER: Record<HealthProblem['kind'], number> = { Deployment: 0, StatefulSet: 1, DaemonSet: 2, Pod: 3, Job: 4 };

function cut(s: string | undefined): string | undefined {
  if (s === undefined || s === '') return undefined;
  return s.length > MAX_HEALTH_TEXT_LENGTH ? `${s.slice(0, MAX_HEALTH_TEXT_LENGTH - 1)}…` : s;
}

function timeOf(t: Date | string | undefined): number | null {
  if (t === undefined) return null;
  const ms = t instanceof Date ? t.getTime() : Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

function nonNegative(n: number | undefined): number {
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

function waitingProblem(pod: V1Pod): Extract<HealthProblem, { kind: 'Pod'; container: string }> | null {
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  for (const s of statuses) {
    const reason = s.state?.waiting?.reason;
    if (reason !== undefined && (POD_WAITING_PROBLEMS as readonly string[]).includes(reason)) {
      const message = cut(s.state?.waiting?.message);
      return { kind: 'Pod', name: pod.metadata!.name!, problem: reason as PodWaitingProblem, container: s.name, ...(message !== undefined && { message }) };
    }
  }
  return null;
}

class Collector {
  readonly byNamespace = new Map<string, HealthProblem[]>();
  nextChangeAt: number | null = null;

  add(meta: V1ObjectMeta | undefined, problem: (name: string) => HealthProblem): void {
    const ns = meta?.namespace;
    const name = meta?.name;
    if (!ns || !name) return;
    let list = this.byNamespace.get(ns);
    if (!list) {
      list = [];
      this.byNamespace.set(ns, list);
    }
    list.push(problem(name));
  }

  wakeAt(t: number): void {
    if (this.nextChangeAt === null || t < this.nextChangeAt) this.nextChangeAt = t;
  }
}

/** Computes the summary of `objects` at time `now` (ms since the epoch). */
export function summarize(objects: WorkloadObjects, now: number, limits: SummaryLimits = DEFAULT_SUMMARY_LIMITS): SummaryResult {
  const c = new Collector();
  for (const d of objects.deployments) {
    const desired = d.spec?.replicas ?? 1;
    const available = nonNegative(d.status?.availableReplicas);
    if (available < desired) c.add(d.metadata, (name) => ({ kind: 'Deployment', name, problem: 'Unavailable', desired, available }));
  }
  for (const s of objects.statefulSets) {
    const desired = s.spec?.replicas ?? 1;
    // availableReplicas is absent from API servers before 1.22; readyReplicas is the closest there.
    const available = nonNegative(s.status?.availableReplicas ?? s.status?.readyReplicas);
    if (available < desired) c.add(s.metadata, (name) => ({ kind: 'StatefulSet', name, problem: 'Unavailable', desired, available }));
  }
  for (const ds of objects.daemonSets) {
    const desired = nonNegative(ds.status?.desiredNumberScheduled);
    const available = nonNegative(ds.status?.numberAvailable);
    if (available < desired) c.add(ds.metadata, (name) => ({ kind: 'DaemonSet', name, problem: 'Unavailable', desired, available }));
  }
  for (const pod of objects.pods) {
    if (!pod.metadata?.name) continue;
    const waiting = waitingProblem(pod);
    if (waiting) {
      c.add(pod.metadata, () => waiting);
      continue;
    }
    if (pod.status?.phase !== 'Pending') continue;
    const created = timeOf(pod.metadata.creationTimestamp);
    if (created === null) continue;
    const dueAt = created + limits.pendingAfterMs;
    if (now < dueAt) {
      c.wakeAt(dueAt);
      continue;
    }
    const scheduled = pod.status.conditions?.find((cond) => cond.type === 'PodScheduled' && cond.status === 'False');
    const message = cut(scheduled ? [scheduled.reason, scheduled.message].filter(Boolean).join(': ') : pod.status.reason);
    const since = new Date(created).toISOString();
    c.add(pod.metadata, (name) => ({ kind: 'Pod', name, problem: 'Pending', since, ...(message !== undefined && { message }) }));
  }
  for (const job of objects.jobs) {
    const failed = job.status?.conditions?.find((cond) => cond.type === 'Failed' && cond.status === 'True');
    if (!failed) continue;
    const reason = cut(failed.reason);
    const message = cut(failed.message);
    c.add(job.metadata, (name) => ({ kind: 'Job', name, problem: 'Failed', ...(reason !== undefined && { reason }), ...(message !== undefined && { message }) }));
  }
  return { summary: capped(c.byNamespace, limits), nextChangeAt: c.nextChangeAt };
}

function capped(byNamespace: Map<string, HealthProblem[]>, limits: SummaryLimits): WorkloadHealthSummary {
  const perNamespace = Math.min(limits.maxPerNamespace, MAX_HEALTH_PROBLEMS_PER_NAMESPACE);
  let room = Math.min(limits.maxTotal, MAX_HEALTH_PROBLEMS);
  const maxNamespaces = Math.min(limits.maxNamespaces, MAX_HEALTH_NAMESPACES);
  const namespaces: NamespaceHealth[] = [];
  let omittedNamespaces = 0;
  let omittedProblems = 0;
  for (const ns of [...byNamespace.keys()].sort()) {
    const all = byNamespace.get(ns)!;
    if (namespaces.length >= maxNamespaces || room === 0) {
      omittedNamespaces += 1;
      omittedProblems += all.length;
      continue;
    }
    all.sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const take = Math.min(all.length, perNamespace, room);
    room -= take;
    namespaces.push({ namespace: ns, problems: all.slice(0, take), omitted: all.length - take });
  }
  return { namespaces, omitted_namespaces: omittedNamespaces, omitted_problems: omittedProblems };
}

/** Whether two summaries say the same (they are built in a canonical order). */
export function sameSummary(a: WorkloadHealthSummary | null, b: WorkloadHealthSummary | null): boolean {
  if (a === null || b === null) return a === b;
  return JSON.stringify(a) === JSON.stringify(b);
}
