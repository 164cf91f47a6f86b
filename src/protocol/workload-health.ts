/**
 * The workload health feature on the wire: agentk opens a `workload_health` stream towards kas whose
 * OPEN head names the summary's sequence number, sends the summary as JSON stream data and ends its
 * direction; kas stores it and answers with a REPLY head `{accepted: true}`, ending its own
 * direction, or resets the stream with PROTOCOL_ERROR when the summary breaks the rules below.
 * docs/protocol.md ("Workload health streams") is the normative description.
 *
 * Each summary replaces the previous one of the agent whole. The sequence number orders summaries
 * of one agentk process (`instance`) that travel on different sessions; a summary of a different
 * instance always wins, since it comes from a newer process.
 */
import { TunnelError } from './errors.js';
import type { Head } from './frames.js';

/** Stream type tag of workload health streams (`t` in the OPEN head). */
export const WORKLOAD_HEALTH_STREAM = 'workload_health';

/** Largest summary document (JSON bytes) kas accepts. */
export const MAX_WORKLOAD_HEALTH_BYTES = 1024 * 1024;
/** Most namespaces listed in one summary. */
export const MAX_HEALTH_NAMESPACES = 200;
/** Most problems listed for one namespace. */
export const MAX_HEALTH_PROBLEMS_PER_NAMESPACE = 100;
/** Most problems listed in one summary, all namespaces together. */
export const MAX_HEALTH_PROBLEMS = 1000;
/** Longest object or namespace name (a DNS subdomain). */
export const MAX_HEALTH_NAME_LENGTH = 253;
/** Longest message or reason; agentk cuts longer ones. */
export const MAX_HEALTH_TEXT_LENGTH = 256;
/** Longest instance id in the head. */
export const MAX_HEALTH_INSTANCE_LENGTH = 64;

export const WORKLOAD_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet'] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

/** The container waiting reasons reported for a Pod. */
export const POD_WAITING_PROBLEMS = ['CrashLoopBackOff', 'ImagePullBackOff', 'ErrImagePull'] as const;
export type PodWaitingProblem = (typeof POD_WAITING_PROBLEMS)[number];

/** A Deployment, StatefulSet or DaemonSet with fewer available replicas than desired. */
export interface UnavailableWorkload {
  kind: WorkloadKind;
  name: string;
  problem: 'Unavailable';
  desired: number;
  available: number;
}

/** A Pod with a container waiting for one of POD_WAITING_PROBLEMS. */
export interface WaitingPod {
  kind: 'Pod';
  name: string;
  problem: PodWaitingProblem;
  container: string;
  message?: string;
}

/** A Pod Pending for longer than agentk's threshold (5 minutes), since `since`. */
export interface PendingPod {
  kind: 'Pod';
  name: string;
  problem: 'Pending';
  /** RFC 3339 time the Pod has been pending since. */
  since: string;
  message?: string;
}

/** A Job whose Failed condition is True. */
export interface FailedJob {
  kind: 'Job';
  name: string;
  problem: 'Failed';
  reason?: string;
  message?: string;
}

export type HealthProblem = UnavailableWorkload | WaitingPod | PendingPod | FailedJob;

export interface NamespaceHealth {
  namespace: string;
  /** The problems listed, at most MAX_HEALTH_PROBLEMS_PER_NAMESPACE. */
  problems: HealthProblem[];
  /** Problems of this namespace left out of `problems` by the caps. */
  omitted: number;
}

/** The health of an agent's cluster: only namespaces with problems are listed. */
export interface WorkloadHealthSummary {
  namespaces: NamespaceHealth[];
  /** Namespaces with problems left out entirely by the caps. */
  omitted_namespaces: number;
  /** Problems of the left-out namespaces. */
  omitted_problems: number;
}

export interface WorkloadHealthHead {
  /** Random id of the agentk process (a new one after a restart). */
  instance: string;
  /** Increases with every summary of that process. */
  seq: number;
}

export interface WorkloadHealthReply {
  accepted: boolean;
}

function bad(message: string): TunnelError {
  return new TunnelError('PROTOCOL_ERROR', `invalid workload health message: ${message}`);
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function count(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${what} must be a non-negative integer`);
  return v;
}

function name(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '' || v.length > MAX_HEALTH_NAME_LENGTH) throw bad(`${what} must be a non-empty string of at most ${MAX_HEALTH_NAME_LENGTH} characters`);
  return v;
}

function text(v: unknown, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > MAX_HEALTH_TEXT_LENGTH) throw bad(`${what} must be a string of at most ${MAX_HEALTH_TEXT_LENGTH} characters`);
  return v;
}

function only(o: Record<string, unknown>, keys: readonly string[], what: string): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw bad(`${what} has an unknown field ${JSON.stringify(k.slice(0, 64))}`);
}

function problemOf(v: unknown, what: string): HealthProblem {
  if (!isMap(v)) throw bad(`${what} must be an object`);
  const kind = v.kind;
  const n = name(v.name, `${what}.name`);
  if ((WORKLOAD_KINDS as readonly unknown[]).includes(kind)) {
    only(v, ['kind', 'name', 'problem', 'desired', 'available'], what);
    if (v.problem !== 'Unavailable') throw bad(`${what}.problem must be "Unavailable" for a ${String(kind)}`);
    const desired = count(v.desired, `${what}.desired`);
    const available = count(v.available, `${what}.available`);
    if (available >= desired) throw bad(`${what}: available must be below desired`);
    return { kind: kind as WorkloadKind, name: n, problem: 'Unavailable', desired, available };
  }
  if (kind === 'Pod') {
    if (v.problem === 'Pending') {
      only(v, ['kind', 'name', 'problem', 'since', 'message'], what);
      const since = v.since;
      if (typeof since !== 'string' || since.length > 64 || Number.isNaN(Date.parse(since))) throw bad(`${what}.since must be an RFC 3339 time`);
      const message = text(v.message, `${what}.message`);
      return { kind, name: n, problem: 'Pending', since, ...(message !== undefined && { message }) };
    }
    if ((POD_WAITING_PROBLEMS as readonly unknown[]).includes(v.problem)) {
      only(v, ['kind', 'name', 'problem', 'container', 'message'], what);
      const container = name(v.container, `${what}.container`);
      const message = text(v.message, `${what}.message`);
      return { kind, name: n, problem: v.problem as PodWaitingProblem, container, ...(message !== undefined && { message }) };
    }
    throw bad(`${what}.problem must be Pending or one of ${POD_WAITING_PROBLEMS.join(', ')} for a Pod`);
  }
  if (kind === 'Job') {
    only(v, ['kind', 'name', 'problem', 'reason', 'message'], what);
    if (v.problem !== 'Failed') throw bad(`${what}.problem must be "Failed" for a Job`);
    const reason = text(v.reason, `${what}.reason`);
    const message = text(v.message, `${what}.message`);
    return { kind, name: n, problem: 'Failed', ...(reason !== undefined && { reason }), ...(message !== undefined && { message }) };
  }
  throw bad(`${what}.kind must be one of ${[...WORKLOAD_KINDS, 'Pod', 'Job'].join(', ')}`);
}

/**
 * Checks a summary's shape and caps (also what the encoder sends, so a buggy agentk fails at home).
 * Returns a copy holding only the documented fields. Throws TunnelError PROTOCOL_ERROR.
 */
export function checkWorkloadHealthSummary(doc: unknown): WorkloadHealthSummary {
  if (!isMap(doc)) throw bad('the summary must be a JSON object');
  only(doc, ['namespaces', 'omitted_namespaces', 'omitted_problems'], 'the summary');
  const list = doc.namespaces;
  if (!Array.isArray(list)) throw bad('namespaces must be an array');
  if (list.length > MAX_HEALTH_NAMESPACES) throw bad(`at most ${MAX_HEALTH_NAMESPACES} namespaces may be listed, got ${list.length}`);
  const seen = new Set<string>();
  let total = 0;
  const namespaces: NamespaceHealth[] = list.map((ns, i) => {
    const what = `namespaces[${i}]`;
    if (!isMap(ns)) throw bad(`${what} must be an object`);
    only(ns, ['namespace', 'problems', 'omitted'], what);
    const namespace = name(ns.namespace, `${what}.namespace`);
    if (seen.has(namespace)) throw bad(`${what}: namespace ${namespace} is listed twice`);
    seen.add(namespace);
    if (!Array.isArray(ns.problems)) throw bad(`${what}.problems must be an array`);
    if (ns.problems.length > MAX_HEALTH_PROBLEMS_PER_NAMESPACE) throw bad(`${what}: at most ${MAX_HEALTH_PROBLEMS_PER_NAMESPACE} problems per namespace, got ${ns.problems.length}`);
    total += ns.problems.length;
    if (total > MAX_HEALTH_PROBLEMS) throw bad(`at most ${MAX_HEALTH_PROBLEMS} problems may be listed in all`);
    const problems = ns.problems.map((p, j) => problemOf(p, `${what}.problems[${j}]`));
    return { namespace, problems, omitted: count(ns.omitted, `${what}.omitted`) };
  });
  return { namespaces, omitted_namespaces: count(doc.omitted_namespaces, 'omitted_namespaces'), omitted_problems: count(doc.omitted_problems, 'omitted_problems') };
}

export function encodeWorkloadHealthHead(h: WorkloadHealthHead): Head {
  return { t: WORKLOAD_HEALTH_STREAM, instance: h.instance, seq: h.seq };
}

/** Validates agentk's OPEN head. Throws TunnelError PROTOCOL_ERROR naming what is wrong. */
export function decodeWorkloadHealthHead(head: Head): WorkloadHealthHead {
  if (head.t !== WORKLOAD_HEALTH_STREAM) throw bad(`stream type must be "${WORKLOAD_HEALTH_STREAM}"`);
  const { instance, seq } = head;
  if (typeof instance !== 'string' || instance === '' || instance.length > MAX_HEALTH_INSTANCE_LENGTH) {
    throw bad(`instance must be a non-empty string of at most ${MAX_HEALTH_INSTANCE_LENGTH} characters`);
  }
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) throw bad('seq must be a non-negative integer');
  return { instance, seq };
}

/** The stream data agentk sends: the summary as UTF-8 JSON (checked first). */
export function encodeWorkloadHealthData(summary: WorkloadHealthSummary): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(checkWorkloadHealthSummary(summary)));
  if (bytes.byteLength > MAX_WORKLOAD_HEALTH_BYTES) throw bad(`the summary is ${bytes.byteLength} bytes; the limit is ${MAX_WORKLOAD_HEALTH_BYTES}`);
  return bytes;
}

/** Decodes and checks the stream data. Throws TunnelError PROTOCOL_ERROR naming what is wrong. */
export function decodeWorkloadHealthData(data: Uint8Array): WorkloadHealthSummary {
  if (data.byteLength > MAX_WORKLOAD_HEALTH_BYTES) throw bad(`the summary is ${data.byteLength} bytes; the limit is ${MAX_WORKLOAD_HEALTH_BYTES}`);
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch {
    throw bad('the data must be a UTF-8 JSON document');
  }
  return checkWorkloadHealthSummary(doc);
}

export function encodeWorkloadHealthReply(): Head {
  return { accepted: true };
}

/** Validates kas's REPLY head. Throws TunnelError PROTOCOL_ERROR naming what is wrong. */
export function decodeWorkloadHealthReply(head: Head): WorkloadHealthReply {
  if (head.accepted !== true) throw bad('accepted must be true');
  return { accepted: true };
}
