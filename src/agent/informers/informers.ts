/**
 * agentk's informer layer: shared list-and-watch caches of cluster objects for the features.
 *
 *   const pods = ctx.informers.acquire<V1Pod>(RESOURCES.pods, { namespace: 'web' });
 *   await pods.waitForSync(signal);
 *   const off = pods.on((ev) => ...);   // 'add' | 'update' | 'delete', after this call
 *   pods.list(); pods.get('web', 'api-0');
 *   off(); pods.release();               // the last release stops the watch
 *
 * One cache per (resource type, namespace, label selector): two features asking for the same get
 * the same cache and one watch. Cached copies have no managedFields and no last-applied
 * annotation; treat them as read-only (they are shared). docs/informers.md has the details.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../../shared/logger.js';
import type { ApiServerClient } from '../kubernetes-api/api-server.js';
import type { AgentMetrics } from '../observability/metrics.js';
import type { BackoffOptions } from '../tunnel/backoff.js';
import { objectKey, type InformerEvent } from './cache.js';
import { SharedInformer, type ResourceType } from './shared-informer.js';

export type { InformerEvent } from './cache.js';
export type { ResourceType } from './shared-informer.js';
export { LAST_APPLIED_ANNOTATION, stripObject } from './cache.js';
export { collectionPath, resourceLabel } from './shared-informer.js';

/** The types agentk's features watch. */
export const RESOURCES = {
  configMaps: { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  /** core/v1 Events (not events.k8s.io). */
  events: { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  deployments: { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true },
  statefulSets: { group: 'apps', version: 'v1', plural: 'statefulsets', kind: 'StatefulSet', namespaced: true },
  daemonSets: { group: 'apps', version: 'v1', plural: 'daemonsets', kind: 'DaemonSet', namespaced: true },
  jobs: { group: 'batch', version: 'v1', plural: 'jobs', kind: 'Job', namespaced: true },
  namespaces: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
} as const satisfies Record<string, ResourceType>;

export interface InformerHandle<T extends KubernetesObject = KubernetesObject> {
  /** The first list is done (the cache holds the server's state as of then). */
  readonly synced: boolean;
  /** Resolves once synced; rejects when `signal` aborts or the handle is released first. */
  waitForSync(signal?: AbortSignal): Promise<void>;
  /** The cached (stripped) objects. */
  list(): T[];
  get(namespace: string | undefined, name: string): T | undefined;
  /**
   * Events after the listener is added; a relist emits the differences (add/update/delete) so
   * listeners converge too. Returns the function that removes the listener.
   */
  on(listener: (ev: InformerEvent<T>) => void): () => void;
  /** Gives the handle back (idempotent); the last handle released stops that informer. */
  release(): void;
}

export interface Informers {
  acquire<T extends KubernetesObject = KubernetesObject>(type: ResourceType, options?: { namespace?: string; labelSelector?: string }): InformerHandle<T>;
  /** Stops every informer; later acquires throw. */
  stop(): void;
}

export interface InformersOptions {
  client: ApiServerClient;
  metrics: AgentMetrics;
  logger: Logger;
  /** Drop managedFields and the last-applied annotation from cached copies (default true; the benchmark turns it off). */
  strip?: boolean;
  backoff?: Partial<BackoffOptions>;
  /** Server-side watch timeout, s (default random in [300, 600)). */
  watchTimeoutSeconds?: number;
}

interface Entry {
  informer: SharedInformer;
  refs: number;
}

/** The Informers of agentk: one SharedInformer per key, reference counted. */
export class SharedInformers implements Informers {
  private readonly options: InformersOptions;
  private readonly entries = new Map<string, Entry>();
  private readonly stopping = new Set<Promise<void>>();
  private stoppedValue = false;

  constructor(options: InformersOptions) {
    this.options = options;
  }

  /** The running informers (for tests and the benchmark). */
  get active(): ReadonlyMap<string, SharedInformer> {
    return new Map([...this.entries].map(([k, e]) => [k, e.informer]));
  }

  acquire<T extends KubernetesObject = KubernetesObject>(type: ResourceType, options: { namespace?: string; labelSelector?: string } = {}): InformerHandle<T> {
    if (this.stoppedValue) throw new Error('informers are stopped');
    const namespace = type.namespaced && options.namespace ? options.namespace : undefined;
    const labelSelector = options.labelSelector || undefined;
    const key = JSON.stringify([type.group, type.version, type.plural, namespace ?? '', labelSelector ?? '']);
    let entry = this.entries.get(key);
    if (!entry) {
      const informer = new SharedInformer({
        type,
        namespace,
        labelSelector,
        client: this.options.client,
        metrics: this.options.metrics,
        logger: this.options.logger,
        strip: this.options.strip,
        backoff: this.options.backoff,
        watchTimeoutSeconds: this.options.watchTimeoutSeconds,
      });
      entry = { informer, refs: 0 };
      this.entries.set(key, entry);
      informer.start();
    }
    entry.refs++;
    const informer = entry.informer;
    const offs = new Set<() => void>();
    let released = false;
    return {
      get synced() {
        return informer.synced;
      },
      waitForSync: (signal) => (released ? Promise.reject(new Error('the informer handle was released')) : informer.waitForSync(signal)),
      list: () => informer.list() as T[],
      get: (ns, name) => informer.get(objectKey(type.namespaced ? ns : undefined, name)) as T | undefined,
      on: (listener) => {
        if (released) return () => {};
        const off = informer.on(listener as (ev: InformerEvent<KubernetesObject>) => void);
        offs.add(off);
        return () => {
          off();
          offs.delete(off);
        };
      },
      release: () => {
        if (released) return;
        released = true;
        for (const off of offs) off();
        offs.clear();
        this.release(key, entry);
      },
    };
  }

  private release(key: string, entry: Entry): void {
    entry.refs--;
    if (entry.refs > 0 || this.entries.get(key) !== entry) return;
    this.entries.delete(key);
    this.track(entry.informer.stop());
  }

  private track(p: Promise<void>): void {
    const tracked = p.catch((err: unknown) => this.options.logger.error({ err }, 'an informer failed to stop')).finally(() => this.stopping.delete(tracked));
    this.stopping.add(tracked);
  }

  stop(): void {
    if (this.stoppedValue) return;
    this.stoppedValue = true;
    for (const entry of this.entries.values()) this.track(entry.informer.stop());
    this.entries.clear();
  }

  /** Resolves when every informer stopped so far has ended its requests. */
  async closed(): Promise<void> {
    while (this.stopping.size > 0) await Promise.all([...this.stopping]);
  }
}
