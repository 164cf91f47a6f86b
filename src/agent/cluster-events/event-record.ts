/**
 * A core/v1 Event as the informer hands it over (plain JSON: times are strings) turned into the
 * record agentk sends, and how many new occurrences an informer event stands for.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { EventRecord, EventType } from '../../protocol/cluster-events.js';

/** The fields of a core/v1 Event agentk reads. */
export interface KubeEvent extends KubernetesObject {
  type?: string;
  reason?: string;
  message?: string;
  count?: number;
  firstTimestamp?: string | null;
  lastTimestamp?: string | null;
  eventTime?: string | null;
  series?: { count?: number; lastObservedTime?: string | null } | null;
  source?: { component?: string } | null;
  reportingComponent?: string | null;
  involvedObject?: { apiVersion?: string; kind?: string; namespace?: string; name?: string; uid?: string };
}

function countOf(e: KubeEvent): number {
  const n = e.series?.count ?? e.count ?? 1;
  return Number.isInteger(n) && n > 0 ? n : 1;
}

function rfc3339(...candidates: Array<string | null | undefined>): string {
  for (const c of candidates) {
    if (c && !Number.isNaN(Date.parse(c))) return new Date(Date.parse(c)).toISOString();
  }
  return new Date().toISOString();
}

/**
 * New occurrences of an informer event: all of a new Event's count, the growth of an updated
 * one's; 0 for a delete or an update that did not count up (a change of labels, say).
 */
export function newOccurrences(type: 'add' | 'update' | 'delete', object: KubeEvent, old: KubeEvent | undefined): number {
  if (type === 'delete') return 0;
  if (type === 'add' || !old) return countOf(object);
  return Math.max(0, countOf(object) - countOf(old));
}

/** The record of an Event with `occurrences` as its count; null for a type this project does not know. */
export function recordOf(e: KubeEvent, occurrences: number): EventRecord | null {
  const type = e.type ?? 'Normal';
  if (type !== 'Normal' && type !== 'Warning') return null;
  const o = e.involvedObject ?? {};
  const lastTime = rfc3339(e.series?.lastObservedTime, e.lastTimestamp, e.eventTime, e.metadata?.creationTimestamp as unknown as string | undefined);
  const record: EventRecord = {
    type: type as EventType,
    reason: e.reason || '(no reason)',
    message: e.message ?? '',
    object: { kind: o.kind || '(unknown)', name: o.name || '(unknown)' },
    count: occurrences,
    firstTime: rfc3339(e.firstTimestamp, e.eventTime, lastTime),
    lastTime,
  };
  if (o.apiVersion) record.object.apiVersion = o.apiVersion;
  if (o.namespace) record.object.namespace = o.namespace;
  if (o.uid) record.object.uid = o.uid;
  const reporter = e.source?.component || e.reportingComponent;
  if (reporter) record.reporter = reporter;
  return record;
}
