/**
 * The labels of an event's involved object, for `observability.events.label_selector`: found
 * with a GET of the object's metadata only (PartialObjectMetadata), its resource found through
 * discovery, both cached. An object that cannot be read (gone, forbidden, an unknown kind) has no
 * labels known, and so matches no selector that requires one. Lookups are bounded: one request per
 * object at a time, a bounded cache, a bounded number in flight.
 */
import type { ApiServerClient } from '../kubernetes-api/api-server.js';

export interface ObjectRef {
  apiVersion?: string;
  kind: string;
  namespace?: string;
  name: string;
}

export type Labels = Readonly<Record<string, string>>;

const MAX_BODY = 1024 * 1024;
const LABELS_TTL_MS = 60_000;
const DISCOVERY_TTL_MS = 10 * 60_000;
const MAX_CACHED = 5000;
const MAX_IN_FLIGHT = 32;

/** GET of a JSON document through agentk's client; null for anything but 200 with JSON. */
export type GetJson = (path: string, accept: string) => Promise<unknown>;

export function getJsonWith(client: ApiServerClient, timeoutMs = 10_000): GetJson {
  return async (path, accept) => {
    const options = await client.requestOptions('GET', path, ['Accept', accept]);
    return new Promise<unknown>((resolve) => {
      const req = client.request({ ...options, timeout: timeoutMs });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', () => resolve(null));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.byteLength;
          if (size > MAX_BODY) req.destroy(new Error('answer too large'));
          else chunks.push(c);
        });
        res.on('error', () => resolve(null));
        res.on('end', () => {
          if (res.statusCode !== 200) return resolve(null);
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          } catch {
            resolve(null);
          }
        });
      });
      req.end();
    });
  };
}

interface Timed<T> {
  value: T;
  at: number;
}

function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_CACHED) map.delete(map.keys().next().value as K);
}

export class ObjectLabels {
  private readonly labels = new Map<string, Timed<Promise<Labels | null>>>();
  private readonly resources = new Map<string, Timed<Promise<Map<string, { plural: string; namespaced: boolean }> | null>>>();
  private inFlight = 0;

  constructor(
    private readonly get: GetJson,
    private readonly now: () => number = Date.now,
  ) {}

  /** The object's labels, or null when they cannot be had. */
  lookup(ref: ObjectRef): Promise<Labels | null> {
    const key = [ref.apiVersion ?? 'v1', ref.kind, ref.namespace ?? '', ref.name].join('\0');
    const cached = this.labels.get(key);
    if (cached && this.now() - cached.at < LABELS_TTL_MS) return cached.value;
    if (this.inFlight >= MAX_IN_FLIGHT) return Promise.resolve(null);
    this.inFlight++;
    const value = this.fetch(ref).finally(() => this.inFlight--);
    remember(this.labels, key, { value, at: this.now() });
    return value;
  }

  private async fetch(ref: ObjectRef): Promise<Labels | null> {
    const apiVersion = ref.apiVersion || 'v1';
    const resources = await this.discover(apiVersion);
    const resource = resources?.get(ref.kind);
    if (!resource) return null;
    const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    if (resource.namespaced && !ref.namespace) return null;
    const path = `${base}${resource.namespaced ? `/namespaces/${encodeURIComponent(ref.namespace!)}` : ''}/${resource.plural}/${encodeURIComponent(ref.name)}`;
    const object = await this.get(path, 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json');
    const labels = (object as { metadata?: { labels?: unknown } } | null)?.metadata?.labels;
    if (labels === undefined) return object ? {} : null;
    if (typeof labels !== 'object' || labels === null) return null;
    return labels as Labels;
  }

  private discover(apiVersion: string): Promise<Map<string, { plural: string; namespaced: boolean }> | null> {
    const cached = this.resources.get(apiVersion);
    if (cached && this.now() - cached.at < DISCOVERY_TTL_MS) return cached.value;
    const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    const value = this.get(path, 'application/json').then((doc) => {
      const list = (doc as { resources?: Array<{ name?: unknown; kind?: unknown; namespaced?: unknown }> } | null)?.resources;
      if (!Array.isArray(list)) return null;
      const out = new Map<string, { plural: string; namespaced: boolean }>();
      for (const r of list) {
        if (typeof r.name !== 'string' || typeof r.kind !== 'string' || r.name.includes('/')) continue;
        out.set(r.kind, { plural: r.name, namespaced: r.namespaced === true });
      }
      return out;
    });
    // A failed discovery is asked again next time, not remembered.
    void value.then((v) => {
      if (v === null && this.resources.get(apiVersion)?.value === value) this.resources.delete(apiVersion);
    });
    remember(this.resources, apiVersion, { value, at: this.now() });
    return value;
  }
}
