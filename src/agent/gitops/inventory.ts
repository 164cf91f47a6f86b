/**
 * The inventory of one manifest project: the objects agentk applied from it, kept in a ConfigMap
 * `inventory-<agent id>-<project hash>` in the project's default namespace, labelled
 * `cli-utils.sigs.k8s.io/inventory-id: <id>` like kpt's and GitLab's inventories. Each object is a
 * data key `<namespace>_<name>_<group>_<kind>` (cli-utils' format; `:` in a name, as in RBAC names,
 * written `__`). Applied objects carry the annotation `config.k8s.io/owning-inventory: <id>`.
 */
import { createHash } from 'node:crypto';
import { kubeErrorMessage, type KubeJson } from '../kubernetes-api/kube-json.js';

export const INVENTORY_ID_LABEL = 'cli-utils.sigs.k8s.io/inventory-id';
export const OWNING_INVENTORY_ANNOTATION = 'config.k8s.io/owning-inventory';

export interface ObjectRef {
  group: string;
  kind: string;
  /** '' for cluster-scoped objects. */
  namespace: string;
  name: string;
}

export function refKey(ref: ObjectRef): string {
  return `${ref.namespace}_${ref.name.replace(/:/g, '__')}_${ref.group}_${ref.kind}`;
}

/** Reads a data key back; null when it is not one of ours. */
export function parseRefKey(key: string): ObjectRef | null {
  const first = key.indexOf('_');
  const last = key.lastIndexOf('_');
  const beforeLast = key.lastIndexOf('_', last - 1);
  if (first < 0 || beforeLast <= first) return null;
  const ref: ObjectRef = {
    namespace: key.slice(0, first),
    name: key.slice(first + 1, beforeLast).replace(/__/g, ':'),
    group: key.slice(beforeLast + 1, last),
    kind: key.slice(last + 1),
  };
  return ref.name !== '' && ref.kind !== '' ? ref : null;
}

export function describeRef(ref: ObjectRef): string {
  const gk = ref.group === '' ? ref.kind : `${ref.kind}.${ref.group}`;
  return ref.namespace === '' ? `${gk} ${ref.name}` : `${gk} ${ref.namespace}/${ref.name}`;
}

/** The inventory id of a project of an agent: `<agent id>-<first 16 hex of sha256(project id)>`. */
export function inventoryId(agentId: string, projectId: string): string {
  return `${agentId}-${createHash('sha256').update(projectId).digest('hex').slice(0, 16)}`;
}

export class InventoryStore {
  readonly id: string;
  readonly name: string;

  constructor(private readonly kube: KubeJson, agentId: string, projectId: string, private readonly projectIdText = projectId) {
    this.id = inventoryId(agentId, projectId);
    this.name = `inventory-${this.id}`;
  }

  private path(namespace: string): string {
    return `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps/${this.name}`;
  }

  /** The objects of the inventory in `namespace` (empty when there is none yet). */
  async read(namespace: string, signal?: AbortSignal): Promise<ObjectRef[]> {
    const res = await this.kube.request('GET', this.path(namespace), undefined, { signal });
    if (res.status === 404) return [];
    if (res.status !== 200) throw new Error(`cannot read the inventory ConfigMap ${namespace}/${this.name}: ${kubeErrorMessage(res)}`);
    const data = (res.json as { data?: Record<string, unknown> } | null)?.data ?? {};
    return Object.keys(data)
      .map(parseRefKey)
      .filter((r): r is ObjectRef => r !== null);
  }

  /** Replaces the inventory's list (server-side apply, like every other object). */
  async write(namespace: string, refs: Iterable<ObjectRef>, options: { dryRun?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const data: Record<string, string> = {};
    for (const ref of refs) data[refKey(ref)] = '';
    const body = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: this.name,
        namespace,
        labels: { [INVENTORY_ID_LABEL]: this.id, 'app.kubernetes.io/managed-by': 'agentk' },
        annotations: { 'agentk.gitlab.com/manifest-project': this.projectIdText },
      },
      data,
    };
    const query = `?fieldManager=agentk&force=true${options.dryRun ? '&dryRun=All' : ''}`;
    const res = await this.kube.request('PATCH', `${this.path(namespace)}${query}`, body, { contentType: 'application/apply-patch+yaml', signal: options.signal });
    if (res.status !== 200 && res.status !== 201) throw new Error(`cannot write the inventory ConfigMap ${namespace}/${this.name}: ${kubeErrorMessage(res)}`);
  }
}
