/**
 * What the Flux feature needs of the API server: one JSON request at a time (KubeJson of
 * src/agent/kubernetes-api/kube-json.ts fits), and the discovery of Flux's API versions.
 */

export interface KubeAnswer {
  status: number;
  json: unknown;
  text: string;
}

export interface KubeRequester {
  request(method: string, path: string, body?: unknown, options?: { contentType?: string; signal?: AbortSignal; timeoutMs?: number }): Promise<KubeAnswer>;
}

export const SOURCE_GROUP = 'source.toolkit.fluxcd.io';
export const NOTIFICATION_GROUP = 'notification.toolkit.fluxcd.io';

/** The versions of Flux's APIs agentk speaks, most preferred first. */
export const FLUX_VERSIONS = ['v1', 'v1beta2'] as const;

/** The versions the API server serves: GitRepository's and Receiver's. */
export interface FluxApis {
  source: string;
  notification: string;
}

async function servedVersion(kube: KubeRequester, group: string, plural: string): Promise<string | null> {
  for (const version of FLUX_VERSIONS) {
    const res = await kube.request('GET', `/apis/${group}/${version}`);
    if (res.status === 404) continue;
    if (res.status !== 200) throw new Error(`GET /apis/${group}/${version} answered ${res.status}: ${res.text.slice(0, 200)}`);
    const resources = (res.json as { resources?: unknown } | null)?.resources;
    if (Array.isArray(resources) && resources.some((r) => typeof r === 'object' && r !== null && (r as { name?: unknown }).name === plural)) return version;
  }
  return null;
}

/** Flux's APIs when both GitRepository and Receiver are served, else null. Rejects when the API server cannot be asked. */
export async function discoverFlux(kube: KubeRequester): Promise<FluxApis | null> {
  const source = await servedVersion(kube, SOURCE_GROUP, 'gitrepositories');
  if (!source) return null;
  const notification = await servedVersion(kube, NOTIFICATION_GROUP, 'receivers');
  if (!notification) return null;
  return { source, notification };
}
