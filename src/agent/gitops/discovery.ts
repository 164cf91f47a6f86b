/**
 * Which resource serves a kind, and whether it is namespaced: the API server's discovery documents
 * (`/api/v1`, `/apis/<group>/<version>`), read per group version when first needed and cached. A
 * kind that is not found is looked up again after `invalidate()` (the applier calls it once new
 * CustomResourceDefinitions are established).
 */
import { kubeErrorMessage, type KubeJson } from '../kubernetes-api/kube-json.js';

export interface ResourceInfo {
  /** The plural resource name (`configmaps`). */
  resource: string;
  namespaced: boolean;
}

interface ApiResourceList {
  resources?: Array<{ name?: unknown; kind?: unknown; namespaced?: unknown }>;
}

export class Discovery {
  private readonly cache = new Map<string, Promise<Map<string, ResourceInfo> | null>>();

  constructor(private readonly kube: KubeJson, private readonly signal?: AbortSignal) {}

  private static groupVersion(group: string, version: string): string {
    return group === '' ? version : `${group}/${version}`;
  }

  static basePath(group: string, version: string): string {
    return group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
  }

  /** Forgets group versions that were missing or lacked a kind (new CRDs may serve them now). */
  invalidate(): void {
    this.cache.clear();
  }

  private load(group: string, version: string): Promise<Map<string, ResourceInfo> | null> {
    const key = Discovery.groupVersion(group, version);
    let entry = this.cache.get(key);
    if (!entry) {
      entry = (async () => {
        const res = await this.kube.request('GET', Discovery.basePath(group, version), undefined, { signal: this.signal });
        if (res.status === 404) return null;
        if (res.status !== 200) throw new Error(`discovery of ${key} failed: ${kubeErrorMessage(res)}`);
        const kinds = new Map<string, ResourceInfo>();
        for (const r of (res.json as ApiResourceList | null)?.resources ?? []) {
          if (typeof r.name !== 'string' || r.name.includes('/') || typeof r.kind !== 'string') continue;
          kinds.set(r.kind, { resource: r.name, namespaced: r.namespaced === true });
        }
        return kinds;
      })();
      // A failed lookup is not cached: the next object tries again.
      entry.catch(() => this.cache.delete(key));
      this.cache.set(key, entry);
    }
    return entry;
  }

  /** The resource of `kind` in `group/version`, or null when the API server does not serve it. */
  async find(group: string, version: string, kind: string): Promise<ResourceInfo | null> {
    const kinds = await this.load(group, version);
    return kinds?.get(kind) ?? null;
  }
}

/** The URL path of one object (without query). */
export function objectPath(group: string, version: string, info: ResourceInfo, namespace: string | undefined, name: string): string {
  const base = Discovery.basePath(group, version);
  const ns = info.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${info.resource}/${encodeURIComponent(name)}`;
}
