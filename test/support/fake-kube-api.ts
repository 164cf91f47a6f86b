/**
 * The one stand-in for the Kubernetes API server in tests (see README.md next to it): an in-process
 * fake good enough for the real `kubectl` (1.32) to run `get ns`, `get ns -w`, `get pods`,
 * `create configmap`, `get configmap`, `delete configmap`, `exec` (WebSocket `v5.channel.k8s.io` and
 * SPDY/3.1), `port-forward` (SPDY over WebSocket and plain SPDY/3.1) and `logs`; with probe routes
 * for proxy tests (`fake-kube-api/probes.ts`); or, for a test that needs answers of its own, a
 * handler of the test's that takes every request. Meant as the "upstream" behind a proxy, so it
 * records every request it receives (`requests`).
 *
 * Where it listens: HTTPS on 127.0.0.1 with the test certificate (or a given one, or plain HTTP),
 * optionally under a base path (`prefix`, as an API server behind a path-routing proxy): `url`
 * includes the prefix, and a request outside it gets a 404.
 *
 * What it serves:
 * - discovery: `/version`, `/api` (APIVersions), `/apis` (an empty APIGroupList), `/api/v1`
 *   (APIResourceList: namespaces, pods, pods/exec, pods/portforward, pods/log, configmaps). Always plain
 *   JSON with `Content-Type: application/json`, also when kubectl asks for aggregated discovery, so
 *   kubectl falls back to the legacy discovery documents. `/openapi/*` is not served (404); none of the
 *   verbs above asks for it.
 * - namespaces (cluster-scoped; starts with default, kube-system, kube-public): list, get, watch, create,
 *   delete. pods (read-only; one pod `demo` in `default`, phase Running, one container `main`): list,
 *   get, watch. configmaps: list, get, watch, create (201), delete. Lists and watches also across all
 *   namespaces (`/api/v1/pods`), with `fieldSelector` (`metadata.name`, `metadata.namespace`; `=`, `==`,
 *   `!=`) and equality `labelSelector`. `dryRun` creates are not stored. Updates (PUT/PATCH) are not
 *   implemented (405 Status).
 * - Tables (`Accept: ...;as=Table;g=meta.k8s.io;v=v1`), which is what `kubectl get` asks for, both for
 *   lists and for watch events, with the usual columns.
 * - watch (`?watch=true`/`watch=1`): the response stays open, chunked, one JSON event per line, written
 *   as it happens. Without `resourceVersion` (or with "0") it starts with ADDED events for what exists;
 *   with a `resourceVersion` it replays the changes made after it, then streams live changes.
 *   `timeoutSeconds` ends the watch.
 * - exec (`/api/v1/namespaces/default/pods/demo/exec`): the fake "container" writes the command's words
 *   joined by spaces plus "\n" on stdout; if `stdin=true` it then echoes stdin to stdout until stdin is
 *   closed; then it reports success. The command `exit <n>` instead fails with exit code n (kubectl exits
 *   with n). Over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`) and over SPDY/3.1
 *   (`X-Stream-Protocol-Version` v4.channel.k8s.io, which kubectl 1.32 gets; v3 down to channel.k8s.io
 *   are accepted too but untested). Only the container `main` (or none named) is accepted.
 * - port-forward (`.../pods/demo/portforward`): every forwarded port of the pod is an echo server. Over
 *   WebSocket (subprotocol `SPDY/3.1+portforward.k8s.io`, SPDY frames tunnelled in binary messages, which
 *   kubectl ≥ 1.31 uses by default) and over plain SPDY/3.1 (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`).
 * - logs (`.../pods/demo/log`): a fixed text, `follow` is ignored.
 * - `/healthz`, `/livez`, `/readyz`: "ok".
 * - the probe routes `/echo`, `/stream`, `/slow`, `/die`, `/hang` and upgrades under `/exec/`
 *   (`fake-kube-api/probes.ts`).
 *
 * Authentication: `Authorization: Bearer <token>` (a wrong or missing token gets a 401 Status, unless
 * `allowAnonymous` and no Authorization header at all). No authorization (RBAC), no impersonation.
 * A test's own `handler` (or `onUpgrade`) answers instead of all of the above, authentication included:
 * such tests check the headers themselves.
 *
 * SPDY/3.1: only what kubectl's client (moby/spdystream) needs: SYN_STREAM (answered with an empty
 * SYN_REPLY), DATA, FIN half-close, RST_STREAM, PING (echoed), GOAWAY; SETTINGS, HEADERS and
 * WINDOW_UPDATE are read and ignored; no flow control (spdystream does not enforce it either). Header
 * blocks are decompressed with the SPDY/3 zlib dictionary and sent as zlib "stored" (uncompressed) blocks,
 * which are valid zlib for the peer's shared decompression context.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import type { CertificatePair } from '../../src/shared/tls-cert.js';
import { testCertificate } from './certificate.js';
import { writeKubeconfig } from './fake-kube-api/kubeconfig.js';
import { Probes } from './fake-kube-api/probes.js';
import { decodeProtobufObject } from './fake-kube-api/protobuf.js';
import {
  execOverSpdy,
  execOverWebSocket,
  execParams,
  portForwardOverSpdy,
  SPDY_EXEC_PROTOCOLS,
  SPDY_PORTFORWARD_PROTOCOLS,
  WS_EXEC_PROTOCOLS,
  WS_PORTFORWARD_PROTOCOLS,
} from './fake-kube-api/remote-command.js';
import { failure, HttpError, notFound, type StatusBody } from './fake-kube-api/status.js';
import { listenLoopback } from './ports.js';

export { writeKubeconfig };

/** The `gitVersion` that `/version` reports. */
export const FAKE_KUBERNETES_VERSION = 'v1.32.0-fake';

export interface RecordedRequest {
  method: string;
  /** The request target as received (prefix, path and query). */
  url: string;
  /** The request headers as received (Node's `rawHeaders`: name, value, name, value...; original case and order). */
  rawHeaders: string[];
  /** Bytes of request body received (0 for upgrade requests and for a test's own handler; final once the body has ended). */
  bodyLength: number;
  /** SHA-256 (hex) of the whole body, once it has ended; '' until then, for upgrades and for a test's own handler. */
  bodySha256: string;
  /** True for Upgrade requests (exec and port-forward, WebSocket or SPDY). */
  upgrade: boolean;
}

/** A test's own answer to plain requests. */
export type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
/** A test's own answer to upgrade requests. */
export type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface FakeKubeApi {
  /** `https://127.0.0.1:<port>` and the prefix, if any (`http://` with `tls: false`). */
  url: string;
  /** The certificate to trust (PEM); empty with `tls: false`. */
  caPem: string;
  /** The bearer token it requires. */
  token: string;
  /** Every request received, in arrival order (upgrade requests included); empty with `record: false`. */
  requests: RecordedRequest[];
  /** The recorded requests whose path, after the prefix, starts with `path`. */
  requestsAt(path: string): RecordedRequest[];
  /** Adds a namespace (no-op if it exists) and emits an ADDED event to open watches. */
  addNamespace(name: string): void;
  /** Lets the probe requests waiting at gate `name` (`stream`, `slow`) go on. */
  release(name: string): void;
  /** Resolves when a `/hang` probe response was closed before it completed (the client aborted it). */
  hangAborted: Promise<void>;
  /** Resolves with what an `/exec/server-first` probe upgrade received from the client after its own end. */
  serverFirstReceived: Promise<string>;
  /** From now on, plain requests go to `handler` (null: back to the fake's own routes). */
  setHandler(handler: RequestHandler | null): void;
  /** Writes `<dir>/kubeconfig` whose context `fake` points here with the token and the CA; returns its path. */
  writeKubeconfig(dir: string): string;
  /** Closes the server and every socket, including upgraded (exec, port-forward) and watch connections. */
  close(): Promise<void>;
}

export interface FakeKubeApiOptions {
  /**
   * HTTPS with the test certificate (true, the default), with the given certificate, or plain HTTP
   * (false). kubectl sends no token over plain HTTP; agentk does.
   */
  tls?: boolean | CertificatePair;
  /** A base path the API server is served under, e.g. `/k8s` (default: none). */
  prefix?: string;
  /** The bearer token to require (default: a random one). */
  token?: string;
  /** Let requests without an Authorization header through (default false). */
  allowAnonymous?: boolean;
  /** The test's own answer to every plain request, instead of the fake's routes and its authentication. */
  handler?: RequestHandler;
  /** The test's own answer to every upgrade request, instead of the fake's routes and its authentication. */
  onUpgrade?: UpgradeHandler;
  /** Record requests in `requests` (default true). Off for load generators that send many. */
  record?: boolean;
}

// ---------------------------------------------------------------------------------------------------
// Objects and resources

interface ObjectMeta {
  name: string;
  namespace?: string;
  uid: string;
  resourceVersion: string;
  creationTimestamp: string;
  labels?: Record<string, string>;
  [key: string]: unknown;
}

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

interface ColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

interface ResourceDef {
  name: string;
  singularName: string;
  kind: string;
  namespaced: boolean;
  shortNames: string[];
  verbs: string[];
  mutable: boolean;
  columns: ColumnDefinition[];
  cells(obj: KubeObject): unknown[];
}

const column = (name: string, type: string, description: string, priority = 0, format = ''): ColumnDefinition => ({ name, type, format, description, priority });

const RESOURCES: Record<string, ResourceDef> = {
  namespaces: {
    name: 'namespaces',
    singularName: 'namespace',
    kind: 'Namespace',
    namespaced: false,
    shortNames: ['ns'],
    verbs: ['create', 'delete', 'get', 'list', 'watch'],
    mutable: true,
    columns: [column('Name', 'string', 'Name of the namespace', 0, 'name'), column('Status', 'string', 'The status of the namespace'), column('Age', 'string', 'Time since creation')],
    cells: (o) => [o.metadata.name, 'Active', age(o)],
  },
  pods: {
    name: 'pods',
    singularName: 'pod',
    kind: 'Pod',
    namespaced: true,
    shortNames: ['po'],
    verbs: ['get', 'list', 'watch'],
    mutable: false,
    columns: [
      column('Name', 'string', 'Name of the pod', 0, 'name'),
      column('Ready', 'string', 'Ready containers / containers'),
      column('Status', 'string', 'The aggregate status of the containers in this pod'),
      column('Restarts', 'string', 'The number of times the containers in this pod have been restarted'),
      column('Age', 'string', 'Time since creation'),
      column('IP', 'string', 'The IP address assigned to the pod', 1),
      column('Node', 'string', 'The node the pod runs on', 1),
      column('Nominated Node', 'string', 'The nominated node', 1),
      column('Readiness Gates', 'string', 'The readiness gates', 1),
    ],
    cells: (o) => {
      const spec = o.spec as { containers: unknown[]; nodeName?: string };
      const status = o.status as { phase: string; podIP?: string };
      const n = spec.containers.length;
      return [o.metadata.name, `${n}/${n}`, status.phase, '0', age(o), status.podIP ?? '<none>', spec.nodeName ?? '<none>', '<none>', '<none>'];
    },
  },
  configmaps: {
    name: 'configmaps',
    singularName: 'configmap',
    kind: 'ConfigMap',
    namespaced: true,
    shortNames: ['cm'],
    verbs: ['create', 'delete', 'get', 'list', 'watch'],
    mutable: true,
    columns: [column('Name', 'string', 'Name of the config map', 0, 'name'), column('Data', 'string', 'Number of data entries'), column('Age', 'string', 'Time since creation')],
    cells: (o) => [o.metadata.name, Object.keys((o.data as Record<string, string> | undefined) ?? {}).length + Object.keys((o.binaryData as Record<string, string> | undefined) ?? {}).length, age(o)],
  },
  // agentk follows Events (cluster events) when kas takes them: listed and watched like the rest.
  events: {
    name: 'events',
    singularName: 'event',
    kind: 'Event',
    namespaced: true,
    shortNames: ['ev'],
    verbs: ['create', 'delete', 'get', 'list', 'watch'],
    mutable: true,
    columns: [column('Name', 'string', 'Name of the event', 0, 'name'), column('Type', 'string', 'Normal or Warning'), column('Reason', 'string', 'Why it happened')],
    cells: (o) => [o.metadata.name, o.type, o.reason],
  },
};

function timestamp(date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function age(obj: KubeObject): string {
  const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(obj.metadata.creationTimestamp)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

// ---------------------------------------------------------------------------------------------------
// Selectors

interface Requirement {
  key: string;
  op: '=' | '!=' | 'exists' | '!exists';
  value: string;
}

function parseSelector(text: string | null): Requirement[] {
  if (!text) return [];
  return text
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part): Requirement => {
      const m = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
      if (m) return { key: m[1]!, op: m[2] === '!=' ? '!=' : '=', value: m[3]! };
      if (part.startsWith('!')) return { key: part.slice(1), op: '!exists', value: '' };
      if (/^[\w./-]+$/.test(part)) return { key: part, op: 'exists', value: '' };
      throw new HttpError(failure(400, `unable to parse requirement: ${part} (the fake supports equality selectors only)`));
    });
}

function matches(requirements: Requirement[], lookup: (key: string) => string | undefined): boolean {
  return requirements.every((r) => {
    const value = lookup(r.key);
    switch (r.op) {
      case '=':
        return value === r.value;
      case '!=':
        return value !== r.value;
      case 'exists':
        return value !== undefined;
      case '!exists':
        return value === undefined;
    }
  });
}

function fieldValue(obj: KubeObject, key: string): string | undefined {
  if (key === 'metadata.name') return obj.metadata.name;
  if (key === 'metadata.namespace') return obj.metadata.namespace ?? '';
  if (key === 'status.phase') return (obj.status as { phase?: string } | undefined)?.phase;
  if (key === 'spec.nodeName') return (obj.spec as { nodeName?: string } | undefined)?.nodeName;
  throw new HttpError(failure(400, `field label not supported: ${key}`));
}

// ---------------------------------------------------------------------------------------------------
// The server

interface Watcher {
  resource: string;
  namespace: string | undefined;
  fields: Requirement[];
  labels: Requirement[];
  table: boolean;
  includeObject: string;
  res: http.ServerResponse;
}

interface WatchEvent {
  rv: number;
  resource: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
}

interface Route {
  resource: string;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
}

function parseRoute(pathname: string): Route | undefined {
  const segments = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  if (segments[0] !== 'api' || segments[1] !== 'v1') return undefined;
  const rest = segments.slice(2);
  if (rest[0] === 'namespaces') {
    if (rest.length <= 2) return { resource: 'namespaces', namespace: undefined, name: rest[1], subresource: undefined };
    const def = RESOURCES[rest[2]!];
    if (!def?.namespaced) return undefined;
    if (rest.length > 5) return undefined;
    return { resource: def.name, namespace: rest[1], name: rest[3], subresource: rest[4] };
  }
  if (rest.length === 1 && RESOURCES[rest[0]!]?.namespaced) return { resource: rest[0]!, namespace: undefined, name: undefined, subresource: undefined };
  return undefined;
}

export async function startFakeKubeApi(options: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
  const tls = options.tls ?? true;
  const token = options.token ?? `fake-token-${crypto.randomBytes(12).toString('hex')}`;
  const cert = tls === true ? await testCertificate() : tls === false ? undefined : tls;
  const prefix = (options.prefix ?? '').replace(/\/$/, '');
  const recording = options.record ?? true;
  let handler = options.handler ?? null;
  const probes = new Probes();
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const watchers = new Set<Watcher>();
  const timers = new Set<NodeJS.Timeout>();
  const events: WatchEvent[] = [];
  const store = new Map<string, Map<string, KubeObject>>(Object.keys(RESOURCES).map((r) => [r, new Map()]));
  let resourceVersion = 1;
  let closed = false;

  const key = (namespace: string | undefined, name: string) => `${namespace ?? ''}/${name}`;

  const newObject = (resource: string, metadata: Partial<ObjectMeta> & { name: string }, rest: Record<string, unknown> = {}): KubeObject => {
    const def = RESOURCES[resource]!;
    return {
      ...rest,
      apiVersion: 'v1',
      kind: def.kind,
      metadata: { ...metadata, uid: crypto.randomUUID(), resourceVersion: String(++resourceVersion), creationTimestamp: timestamp() },
    };
  };

  const emit = (type: WatchEvent['type'], resource: string, object: KubeObject) => {
    const event: WatchEvent = { rv: Number(object.metadata.resourceVersion), resource, type, object };
    events.push(event);
    for (const watcher of watchers) sendEvent(watcher, event);
  };

  const put = (resource: string, object: KubeObject, notify = true) => {
    store.get(resource)!.set(key(object.metadata.namespace, object.metadata.name), object);
    if (notify) emit('ADDED', resource, object);
  };

  for (const name of ['default', 'kube-system', 'kube-public']) put('namespaces', newObject('namespaces', { name }, { spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } }), false);
  const started = timestamp();
  put(
    'pods',
    newObject(
      'pods',
      { name: 'demo', namespace: 'default', labels: { app: 'demo' } },
      {
        spec: { containers: [{ name: 'main', image: 'registry.example/demo:1', ports: [{ containerPort: 8080, name: 'http', protocol: 'TCP' }] }], nodeName: 'fake-node', restartPolicy: 'Always' },
        status: {
          phase: 'Running',
          podIP: '10.0.0.10',
          hostIP: '192.168.0.10',
          startTime: started,
          conditions: [
            { type: 'Initialized', status: 'True', lastTransitionTime: started },
            { type: 'Ready', status: 'True', lastTransitionTime: started },
            { type: 'ContainersReady', status: 'True', lastTransitionTime: started },
            { type: 'PodScheduled', status: 'True', lastTransitionTime: started },
          ],
          containerStatuses: [
            { name: 'main', ready: true, started: true, restartCount: 0, image: 'registry.example/demo:1', imageID: 'registry.example/demo@sha256:0', containerID: 'containerd://fake', state: { running: { startedAt: started } } },
          ],
        },
      },
    ),
    false,
  );

  // -- helpers ---------------------------------------------------------------------------------------

  const toTable = (resource: string, objects: KubeObject[], includeObject: string, listMeta: Record<string, unknown> = {}) => {
    const def = RESOURCES[resource]!;
    return {
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      metadata: listMeta,
      columnDefinitions: def.columns,
      rows: objects.map((o) => ({
        cells: def.cells(o),
        object:
          includeObject === 'Object' ? o : includeObject === 'None' ? null : { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata },
      })),
    };
  };

  const selected = (namespace: string | undefined, fields: Requirement[], labels: Requirement[]) => (o: KubeObject) =>
    (namespace === undefined || o.metadata.namespace === namespace) &&
    matches(fields, (k) => fieldValue(o, k)) &&
    matches(labels, (k) => o.metadata.labels?.[k]);

  function sendEvent(watcher: Watcher, event: WatchEvent): void {
    if (event.resource !== watcher.resource) return;
    if (!selected(watcher.namespace, watcher.fields, watcher.labels)(event.object)) return;
    const object = watcher.table ? toTable(event.resource, [event.object], watcher.includeObject, { resourceVersion: event.object.metadata.resourceVersion }) : event.object;
    watcher.res.write(`${JSON.stringify({ type: event.type, object })}\n`);
  }

  const sendJson = (res: http.ServerResponse, code: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' });
    res.end(text);
  };

  const authError = (headers: http.IncomingHttpHeaders): StatusBody | undefined => {
    const authorization = headers.authorization;
    if (authorization === undefined) return options.allowAnonymous ? undefined : failure(401, 'Unauthorized');
    return authorization === `Bearer ${token}` ? undefined : failure(401, 'Unauthorized');
  };

  const record = (req: http.IncomingMessage, upgrade: boolean): RecordedRequest => {
    const entry: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, bodyLength: 0, bodySha256: '', upgrade };
    if (recording) requests.push(entry);
    return entry;
  };

  /** The path after the prefix, or undefined for a path outside it. */
  const unprefixed = (pathname: string): string | undefined => {
    if (prefix === '') return pathname;
    return pathname.startsWith(`${prefix}/`) ? pathname.slice(prefix.length) : undefined;
  };

  // -- REST --------------------------------------------------------------------------------------------

  const discovery = (pathname: string, port: number): unknown => {
    switch (pathname) {
      case '/version':
        return { major: '1', minor: '32', gitVersion: FAKE_KUBERNETES_VERSION, gitCommit: 'fake', gitTreeState: 'clean', buildDate: '2025-01-01T00:00:00Z', goVersion: 'go1.23.0', compiler: 'gc', platform: 'linux/amd64' };
      case '/api':
        return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${port}` }] };
      case '/apis':
        return { kind: 'APIGroupList', apiVersion: 'v1', groups: [] };
      case '/api/v1':
        return {
          kind: 'APIResourceList',
          groupVersion: 'v1',
          resources: [
            ...Object.values(RESOURCES).map((d) => ({ name: d.name, singularName: d.singularName, namespaced: d.namespaced, kind: d.kind, verbs: d.verbs, shortNames: d.shortNames, ...(d.name === 'pods' ? { categories: ['all'] } : {}) })),
            { name: 'pods/exec', singularName: '', namespaced: true, kind: 'PodExecOptions', verbs: ['create', 'get'] },
            { name: 'pods/portforward', singularName: '', namespaced: true, kind: 'PodPortForwardOptions', verbs: ['create', 'get'] },
            { name: 'pods/log', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] },
          ],
        };
      default:
        return undefined;
    }
  };

  const handleResource = (req: http.IncomingMessage, res: http.ServerResponse, url: URL, route: Route, body: Buffer) => {
    const def = RESOURCES[route.resource]!;
    const objects = store.get(route.resource)!;
    const method = req.method ?? 'GET';
    const accept = req.headers.accept ?? '';
    const table = /as=Table/.test(accept);
    const includeObject = url.searchParams.get('includeObject') ?? 'Metadata';
    if (route.namespace !== undefined && !store.get('namespaces')!.has(key(undefined, route.namespace)) && method !== 'GET') {
      throw notFound('namespaces', route.namespace);
    }

    if (route.subresource !== undefined) {
      if (route.resource === 'pods' && route.name !== undefined && route.subresource === 'log') {
        if (!objects.has(key(route.namespace, route.name))) throw notFound('pods', route.name);
        const text = `fake log of pod ${route.name}\n`;
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(text) });
        res.end(text);
        return;
      }
      if (route.resource === 'pods' && (route.subresource === 'exec' || route.subresource === 'portforward' || route.subresource === 'attach')) {
        throw new HttpError(failure(400, 'Upgrade request required'));
      }
      throw new HttpError(failure(404, 'the server could not find the requested resource'));
    }

    if (route.name === undefined) {
      if (method === 'GET') {
        const fields = parseSelector(url.searchParams.get('fieldSelector'));
        const labels = parseSelector(url.searchParams.get('labelSelector'));
        const filter = selected(route.namespace, fields, labels);
        const watch = ['true', '1'].includes(url.searchParams.get('watch') ?? '');
        if (watch) {
          const watcher: Watcher = { resource: route.resource, namespace: route.namespace, fields, labels, table, includeObject, res };
          res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
          res.flushHeaders();
          const since = url.searchParams.get('resourceVersion');
          if (!since || since === '0') {
            for (const o of [...objects.values()].filter(filter)) sendEvent(watcher, { rv: Number(o.metadata.resourceVersion), resource: route.resource, type: 'ADDED', object: o });
          } else {
            for (const e of events) if (e.rv > Number(since)) sendEvent(watcher, e);
          }
          watchers.add(watcher);
          const timeout = Number(url.searchParams.get('timeoutSeconds') ?? '0');
          let timer: NodeJS.Timeout | undefined;
          if (timeout > 0) {
            timer = setTimeout(() => res.end(), timeout * 1000);
            timers.add(timer);
          }
          res.on('close', () => {
            watchers.delete(watcher);
            if (timer) {
              clearTimeout(timer);
              timers.delete(timer);
            }
          });
          return;
        }
        const items = [...objects.values()].filter(filter);
        const listMeta = { resourceVersion: String(resourceVersion) };
        sendJson(res, 200, table ? toTable(route.resource, items, includeObject, listMeta) : { kind: `${def.kind}List`, apiVersion: 'v1', metadata: listMeta, items });
        return;
      }
      if (method === 'POST') {
        if (!def.mutable) throw new HttpError(failure(405, `the fake API server does not create ${route.resource}`));
        let input: Partial<KubeObject>;
        if (/protobuf/.test(req.headers['content-type'] ?? '')) {
          input = decodeProtobufObject(body) as Partial<KubeObject>;
        } else {
          try {
            input = JSON.parse(body.toString('utf8')) as Partial<KubeObject>;
          } catch {
            throw new HttpError(failure(400, 'the request body is not valid JSON'));
          }
        }
        if (input.kind !== undefined && input.kind !== def.kind) throw new HttpError(failure(400, `a ${input.kind} cannot be created in ${route.resource}`));
        const meta = (input.metadata ?? {}) as Partial<ObjectMeta> & { generateName?: string };
        const name = meta.name || (meta.generateName ? `${meta.generateName}${crypto.randomBytes(3).toString('hex').slice(0, 5)}` : undefined);
        if (!name) throw new HttpError(failure(422, `${def.kind} "" is invalid: metadata.name: Required value: name or generateName is required`));
        if (route.namespace !== undefined && meta.namespace && meta.namespace !== route.namespace) {
          throw new HttpError(failure(400, 'the namespace of the provided object does not match the namespace sent on the request'));
        }
        if (objects.has(key(route.namespace, name))) throw new HttpError(failure(409, `${route.resource} "${name}" already exists`, { name, kind: route.resource }));
        const { apiVersion: _a, kind: _k, metadata: _m, ...rest } = input;
        const created = newObject(route.resource, { ...meta, name, ...(route.namespace !== undefined ? { namespace: route.namespace } : {}) } as ObjectMeta, rest);
        delete (created.metadata as { generateName?: string }).generateName;
        if (route.resource === 'namespaces') created.status = { phase: 'Active' };
        if (url.searchParams.get('dryRun') === null) put(route.resource, created);
        else resourceVersion--; // nothing stored, nothing changed
        sendJson(res, 201, created);
        return;
      }
      throw new HttpError(failure(405, `the fake API server does not support ${method} on a ${route.resource} collection`));
    }

    const existing = objects.get(key(route.namespace, route.name));
    if (method === 'GET') {
      if (!existing) throw notFound(route.resource, route.name);
      sendJson(res, 200, table ? toTable(route.resource, [existing], includeObject, { resourceVersion: existing.metadata.resourceVersion }) : existing);
      return;
    }
    if (method === 'DELETE') {
      if (!def.mutable) throw new HttpError(failure(405, `the fake API server does not delete ${route.resource}`));
      if (!existing) throw notFound(route.resource, route.name);
      if (url.searchParams.get('dryRun') === null) {
        objects.delete(key(route.namespace, route.name));
        if (route.resource === 'namespaces') {
          for (const [resource, map] of store) {
            for (const [k, o] of map) {
              if (o.metadata.namespace === route.name) {
                map.delete(k);
                emit('DELETED', resource, { ...o, metadata: { ...o.metadata, resourceVersion: String(++resourceVersion) } });
              }
            }
          }
        }
        emit('DELETED', route.resource, { ...existing, metadata: { ...existing.metadata, resourceVersion: String(++resourceVersion) } });
      }
      sendJson(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name: route.name, kind: route.resource, uid: existing.metadata.uid } });
      return;
    }
    throw new HttpError(failure(405, `the fake API server does not support ${method} on ${route.resource}`));
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const entry = record(req, false);
    if (handler) {
      // The test's handler owns the request, body included (it may leave it unread on purpose).
      handler(req, res);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      entry.bodyLength += chunk.length;
      chunks.push(chunk);
    });
    req.on('end', () => {
      try {
        const body = Buffer.concat(chunks);
        entry.bodySha256 = crypto.createHash('sha256').update(body).digest('hex');
        const denied = authError(req.headers);
        if (denied) {
          sendJson(res, 401, denied);
          return;
        }
        const url = new URL(req.url ?? '/', 'http://fake');
        const path = unprefixed(url.pathname);
        if (path === undefined) throw new HttpError(failure(404, `${url.pathname} is not under the prefix ${prefix}`));
        const port = (server.address() as AddressInfo).port;
        if (['/healthz', '/livez', '/readyz'].includes(path)) {
          res.writeHead(200, { 'Content-Type': 'text/plain' });
          res.end('ok');
          return;
        }
        if (probes.serve(path, req, res, body, entry.bodySha256)) return;
        const doc = req.method === 'GET' ? discovery(path, port) : undefined;
        if (doc !== undefined) {
          sendJson(res, 200, doc);
          return;
        }
        const route = parseRoute(path);
        if (!route) throw new HttpError(failure(404, 'the server could not find the requested resource'));
        handleResource(req, res, url, route, body);
      } catch (err) {
        const status = err instanceof HttpError ? err.status : failure(500, err instanceof Error ? err.message : String(err));
        if (!res.headersSent) sendJson(res, status.code, status);
        else res.destroy();
      }
    });
  };

  // -- upgrades (exec, port-forward) -------------------------------------------------------------------

  const wsProtocol = new WeakMap<http.IncomingMessage, string>();
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, handleProtocols: (_offered, req) => wsProtocol.get(req) ?? false });

  const rejectUpgrade = (socket: Duplex, status: StatusBody) => {
    const text = JSON.stringify(status);
    const reason = http.STATUS_CODES[status.code] ?? 'Error';
    socket.end(`HTTP/1.1 ${status.code} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
  };

  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    record(req, true);
    if (options.onUpgrade) return options.onUpgrade(req, socket, head);
    // A test with a handler of its own and no onUpgrade: a server without upgrades drops the connection.
    if (handler) return void socket.destroy();
    socket.on('error', () => socket.destroy());
    const denied = authError(req.headers);
    if (denied) return rejectUpgrade(socket, denied);
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = unprefixed(url.pathname);
    if (path === undefined) return rejectUpgrade(socket, failure(404, `${url.pathname} is not under the prefix ${prefix}`));
    if (probes.upgrade(path, req, socket)) return;
    const route = parseRoute(path);
    if (!route || route.resource !== 'pods' || route.name === undefined || (route.subresource !== 'exec' && route.subresource !== 'portforward')) {
      return rejectUpgrade(socket, failure(404, 'the server could not find the requested resource'));
    }
    if (!store.get('pods')!.has(key(route.namespace, route.name))) return rejectUpgrade(socket, notFound('pods', route.name).status);
    const upgrade = (req.headers.upgrade ?? '').toLowerCase();
    const exec = route.subresource === 'exec';
    const container = url.searchParams.get('container');
    if (exec && container !== null && container !== 'main') {
      return rejectUpgrade(socket, failure(400, `container ${container} is not valid for pod ${route.name}`));
    }

    if (upgrade === 'websocket') {
      const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
      const protocol = (exec ? WS_EXEC_PROTOCOLS : WS_PORTFORWARD_PROTOCOLS).find((p) => offered.includes(p));
      if (!protocol) return rejectUpgrade(socket, failure(400, `unable to upgrade: none of the offered subprotocols [${offered.join(', ')}] is supported`));
      wsProtocol.set(req, protocol);
      // `ws` rejects subprotocols that are not RFC 7230 tokens, like "SPDY/3.1+portforward.k8s.io" ('/' is
      // not a token character). The choice is made above; hand `ws` a token so its parser accepts the request
      // (`handleProtocols` answers with the real choice). `requests` keeps the headers as received.
      req.headers['sec-websocket-protocol'] = 'fake-kube-api';
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('error', () => ws.terminate());
        if (exec) {
          execOverWebSocket(ws, execParams(url));
          return;
        }
        const session = portForwardOverSpdy(
          (bytes) => {
            if (ws.readyState === WebSocket.OPEN) ws.send(bytes, { binary: true });
          },
          () => ws.close(1000),
        );
        ws.on('message', (data: Buffer) => session.feed(data));
      });
      return;
    }

    if (upgrade.includes('spdy/3.1')) {
      const offered = [req.headers['x-stream-protocol-version'] ?? []].flat().join(',').split(',').map((p) => p.trim());
      const protocol = (exec ? SPDY_EXEC_PROTOCOLS : SPDY_PORTFORWARD_PROTOCOLS).find((p) => offered.includes(p));
      if (!protocol) return rejectUpgrade(socket, failure(403, `unable to upgrade: none of the offered protocol versions [${offered.join(', ')}] is supported`));
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${protocol}\r\n\r\n`);
      const write = (bytes: Buffer) => {
        if (!socket.destroyed && socket.writable) socket.write(bytes);
      };
      const end = () => socket.end();
      const session = exec ? execOverSpdy(write, end, execParams(url), protocol) : portForwardOverSpdy(write, end);
      socket.on('data', (chunk: Buffer) => session.feed(chunk));
      if (head.length) session.feed(head);
      return;
    }

    rejectUpgrade(socket, failure(400, `unable to upgrade: unsupported Upgrade "${req.headers.upgrade ?? ''}"`));
  };

  // -- listen ------------------------------------------------------------------------------------------

  const server: http.Server = cert ? https.createServer({ cert: cert.cert, key: cert.key }) : http.createServer();
  const track = (socket: Socket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
  };
  server.on('connection', track);
  server.on('secureConnection', track);
  server.on('request', onRequest);
  server.on('upgrade', onUpgrade);
  const port = await listenLoopback(server);

  const url = `${cert ? 'https' : 'http'}://127.0.0.1:${port}${prefix}`;
  return {
    url,
    caPem: cert?.cert ?? '',
    token,
    requests,
    requestsAt: (path) => requests.filter((r) => r.url.startsWith(prefix + path)),
    release: (name) => probes.release(name),
    hangAborted: probes.hangAborted,
    serverFirstReceived: probes.serverFirstReceived,
    setHandler(next) {
      handler = next;
    },
    writeKubeconfig: (dir) => writeKubeconfig(dir, url, token, cert?.cert),
    addNamespace(name: string) {
      if (store.get('namespaces')!.has(key(undefined, name))) return;
      put('namespaces', newObject('namespaces', { name }, { spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } }));
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const watcher of watchers) watcher.res.destroy();
      watchers.clear();
      for (const ws of wss.clients) ws.terminate();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => {
        wss.close(() => resolve());
      });
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
