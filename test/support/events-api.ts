/**
 * Cluster events in tests: create core/v1 Events in a (fake or real) API server as a controller
 * would, and read kas's events API (list and watch) with a GitLab JWT.
 */
import http from 'node:http';
import https from 'node:https';

export interface ApiEvent {
  id: string;
  source: string;
  type: string;
  reason: string;
  message: string;
  count: number;
  firstTime: string;
  lastTime: string;
  receivedAt: string;
  object?: { apiVersion?: string; kind: string; name: string; namespace?: string };
}

/** kas's API for GitLab at `address` (host:port, plain HTTP) with a JWT made per request. */
export interface EventsApi {
  address: string;
  jwt: () => string;
}

export function apiGet(api: EventsApi, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`http://${api.address}${path}`, { headers: { Authorization: `Bearer ${api.jwt()}`, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** `GET /api/v1/agents/{agentId}/events<query>`; fails on anything but 200. */
export async function listEvents(api: EventsApi, agentId: number, query = ''): Promise<ApiEvent[]> {
  const r = await apiGet(api, `/api/v1/agents/${agentId}/events${query}`);
  if (r.status !== 200) throw new Error(`GET events answered ${r.status}: ${r.body}`);
  return (JSON.parse(r.body) as { events: ApiEvent[] }).events;
}

/** An open watch request: the raw text received so far. */
export interface EventsWatch {
  text(): string;
  /** The events received so far (NDJSON watches). */
  events(): ApiEvent[];
  res: http.IncomingMessage;
  req: http.ClientRequest;
  close(): void;
}

export function watchEvents(api: EventsApi, agentId: number, query = '', headers: Record<string, string> = {}): Promise<EventsWatch> {
  return new Promise((resolve, reject) => {
    let text = '';
    const req = http.get(`http://${api.address}/api/v1/agents/${agentId}/events?watch=true${query}`, { headers: { Authorization: `Bearer ${api.jwt()}`, ...headers } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('error', () => undefined);
      resolve({
        text: () => text,
        events: () =>
          text
            .split('\n')
            .filter((l) => l.trim() !== '')
            .map((l) => JSON.parse(l) as ApiEvent),
        res,
        req,
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}

/** An API server to create Events in: URL, CA (PEM, '' for none or a system-trusted one) and bearer token. */
export interface KubeTarget {
  url: string;
  caPem: string;
  token: string;
}

let eventSeq = 0;

export interface KubeEventSpec {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  /** The involved Pod's name. */
  object: string;
  namespace?: string;
  /** Default `<object>.<n>`. */
  name?: string;
}

/** Creates a core/v1 Event about a Pod, as a controller would (count 1, times now). */
export function createKubeEvent(kube: KubeTarget, e: KubeEventSpec): Promise<void> {
  const ns = e.namespace ?? 'default';
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const body = JSON.stringify({
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: e.name ?? `${e.object}.${process.pid}-${++eventSeq}`, namespace: ns },
    involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: ns, name: e.object },
    type: e.type,
    reason: e.reason,
    message: e.message,
    count: 1,
    firstTimestamp: now,
    lastTimestamp: now,
    source: { component: 'test' },
  });
  const url = new URL(`${kube.url.replace(/\/$/, '')}/api/v1/namespaces/${ns}/events`);
  const request = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', ...(kube.caPem && { ca: kube.caPem }), headers: { Authorization: `Bearer ${kube.token}`, 'Content-Type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 201 || res.statusCode === 200 ? resolve() : reject(new Error(`creating the Event answered ${res.statusCode}: ${Buffer.concat(chunks).toString()}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}
