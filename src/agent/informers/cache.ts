/**
 * The pure parts of an informer cache: how objects are keyed, what is dropped from a cached copy,
 * and the events that bring a listener from one snapshot to the next after a relist.
 */
import type { KubernetesObject } from '@kubernetes/client-node';

/** The annotation `kubectl apply` (client-side) writes: a full copy of the applied object. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

export type InformerEvent<T> = { type: 'add' | 'update' | 'delete'; object: T; old?: T };

/** The cache key of an object: `namespace/name` (`/name` for cluster-scoped objects). */
export function objectKey(namespace: string | undefined | null, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

export function keyOf(object: KubernetesObject): string {
  return objectKey(object.metadata?.namespace, object.metadata?.name ?? '');
}

export function resourceVersionOf(object: KubernetesObject): string {
  return object.metadata?.resourceVersion ?? '';
}

/**
 * Drops what no feature of agentk reads and what makes up most of an object's size on servers
 * with server-side apply or `kubectl apply`: `metadata.managedFields` and the last-applied
 * annotation (an empty annotations map goes too). Changes `object` in place and returns it: the
 * objects come straight from JSON.parse and nobody else holds them.
 */
export function stripObject<T extends KubernetesObject>(object: T): T {
  const metadata = object.metadata;
  if (!metadata) return object;
  delete metadata.managedFields;
  const annotations = metadata.annotations;
  if (annotations && LAST_APPLIED_ANNOTATION in annotations) {
    delete annotations[LAST_APPLIED_ANNOTATION];
    if (Object.keys(annotations).length === 0) delete metadata.annotations;
  }
  return object;
}

/**
 * The events that turn the snapshot `before` into `after` (both keyed by objectKey): a delete for
 * each object that is gone, an add for each new one, an update for each whose resourceVersion
 * changed. Objects whose resourceVersion did not change emit nothing.
 */
export function diffSnapshots<T extends KubernetesObject>(before: ReadonlyMap<string, T>, after: ReadonlyMap<string, T>): InformerEvent<T>[] {
  const events: InformerEvent<T>[] = [];
  for (const [key, old] of before) {
    if (!after.has(key)) events.push({ type: 'delete', object: old });
  }
  for (const [key, object] of after) {
    const old = before.get(key);
    if (old === undefined) events.push({ type: 'add', object });
    else if (resourceVersionOf(old) !== resourceVersionOf(object)) events.push({ type: 'update', object, old });
  }
  return events;
}
