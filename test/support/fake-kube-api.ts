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
import zlib from 'node:zlib';
import { WebSocket, WebSocketServer } from 'ws';
import type { CertificatePair } from '../../src/shared/tls-cert.js';
import { testCertificate } from './certificate.js';
import { writeKubeconfig } from './fake-kube-api/kubeconfig.js';
import { Probes } from './fake-kube-api/probes.js';
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

interface StatusBody {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: { name?: string; kind?: string; uid?: string };
  code: number;
}

const REASONS: Record<number, string> = { 400: 'BadRequest', 401: 'Unauthorized', 404: 'NotFound', 405: 'MethodNotAllowed', 406: 'NotAcceptable', 409: 'AlreadyExists', 415: 'UnsupportedMediaType', 422: 'Invalid', 500: 'InternalError' };

function failure(code: number, message: string, details?: StatusBody['details']): StatusBody {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: REASONS[code] ?? 'BadRequest', ...(details ? { details } : {}), code };
}

class HttpError extends Error {
  constructor(readonly status: StatusBody) {
    super(status.message);
  }
}

function notFound(resource: string, name: string): HttpError {
  return new HttpError(failure(404, `${resource} "${name}" not found`, { name, kind: resource }));
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
// Kubernetes protobuf request bodies (kubectl's typed clients, e.g. `kubectl create configmap`, send
// `application/vnd.kubernetes.protobuf`): just enough to read a ConfigMap or a Namespace.

type ProtoValue = number | Buffer;

function protoFields(buf: Buffer): Array<[number, ProtoValue]> {
  const fields: Array<[number, ProtoValue]> = [];
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let scale = 1;
    for (;;) {
      if (pos >= buf.length) throw new HttpError(failure(400, 'truncated protobuf body'));
      const byte = buf[pos++]!;
      result += (byte & 0x7f) * scale;
      scale *= 128;
      if ((byte & 0x80) === 0) return result;
    }
  };
  while (pos < buf.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0:
        fields.push([field, varint()]);
        break;
      case 1:
        pos += 8;
        break;
      case 2: {
        const length = varint();
        fields.push([field, buf.subarray(pos, pos + length)]);
        pos += length;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw new HttpError(failure(400, 'unsupported protobuf wire type'));
    }
  }
  return fields;
}

const protoBytes = (fields: Array<[number, ProtoValue]>, field: number): Buffer[] =>
  fields.filter(([f, v]) => f === field && Buffer.isBuffer(v)).map(([, v]) => v as Buffer);
const protoString = (fields: Array<[number, ProtoValue]>, field: number): string | undefined => protoBytes(fields, field)[0]?.toString('utf8');

function protoMap(fields: Array<[number, ProtoValue]>, field: number, encoding: 'utf8' | 'base64' = 'utf8'): Record<string, string> | undefined {
  const entries = protoBytes(fields, field);
  if (entries.length === 0) return undefined;
  const map: Record<string, string> = {};
  for (const entry of entries) {
    const kv = protoFields(entry);
    map[protoString(kv, 1) ?? ''] = (protoBytes(kv, 2)[0] ?? Buffer.alloc(0)).toString(encoding);
  }
  return map;
}

function protoObjectMeta(buf: Buffer | undefined): Record<string, unknown> {
  const f = protoFields(buf ?? Buffer.alloc(0));
  const meta: Record<string, unknown> = {};
  const set = (name: string, value: unknown) => {
    if (value !== undefined && value !== '') meta[name] = value;
  };
  set('name', protoString(f, 1));
  set('generateName', protoString(f, 2));
  set('namespace', protoString(f, 3));
  set('labels', protoMap(f, 11));
  set('annotations', protoMap(f, 12));
  const finalizers = protoBytes(f, 14).map((b) => b.toString('utf8'));
  if (finalizers.length) meta.finalizers = finalizers;
  return meta;
}

/** Decodes the `k8s\0` + runtime.Unknown envelope and the few kinds the fake can create. */
function decodeProtobufObject(body: Buffer): Record<string, unknown> {
  if (body.subarray(0, 4).toString('latin1') !== 'k8s\0') throw new HttpError(failure(400, 'protobuf body without the k8s envelope'));
  const unknown = protoFields(body.subarray(4));
  const typeMeta = protoFields(protoBytes(unknown, 1)[0] ?? Buffer.alloc(0));
  const apiVersion = protoString(typeMeta, 1) ?? '';
  const kind = protoString(typeMeta, 2) ?? '';
  const raw = protoFields(protoBytes(unknown, 2)[0] ?? Buffer.alloc(0));
  const metadata = protoObjectMeta(protoBytes(raw, 1)[0]);
  if (kind === 'ConfigMap') {
    const object: Record<string, unknown> = { apiVersion, kind, metadata };
    const data = protoMap(raw, 2);
    const binaryData = protoMap(raw, 3, 'base64');
    if (data) object.data = data;
    if (binaryData) object.binaryData = binaryData;
    const immutable = raw.find(([f]) => f === 4)?.[1];
    if (immutable !== undefined) object.immutable = immutable === 1;
    return object;
  }
  if (kind === 'Namespace') {
    const spec = protoFields(protoBytes(raw, 2)[0] ?? Buffer.alloc(0));
    return { apiVersion, kind, metadata, spec: { finalizers: protoBytes(spec, 1).map((b) => b.toString('utf8')) } };
  }
  throw new HttpError(failure(415, `the fake API server cannot decode a protobuf ${kind || 'object'}; send JSON`));
}

// ---------------------------------------------------------------------------------------------------
// SPDY/3.1 (server side, just enough for kubectl's moby/spdystream client)

/** The SPDY/3 header compression dictionary (1423 bytes): length-prefixed words, then a plain tail. */
const SPDY_DICTIONARY: Buffer = (() => {
  const words = [
    'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding', 'accept-language', 'accept-ranges', 'age', 'allow',
    'authorization', 'cache-control', 'connection', 'content-base', 'content-encoding', 'content-language', 'content-length', 'content-location',
    'content-md5', 'content-range', 'content-type', 'date', 'etag', 'expect', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match',
    'if-range', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range',
    'referer', 'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via', 'warning', 'www-authenticate',
    'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url', 'public', 'set-cookie', 'keep-alive', 'origin',
  ];
  const tail =
    '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
    '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found' +
    '500 Internal Server Error501 Not Implemented503 Service Unavailable' +
    'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
    'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,' +
    'publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';
  const parts = words.map((w) => {
    const b = Buffer.alloc(4 + w.length);
    b.writeUInt32BE(w.length, 0);
    b.write(w, 4, 'latin1');
    return b;
  });
  parts.push(Buffer.from(tail, 'latin1'));
  return Buffer.concat(parts);
})();

function adler32(data: Buffer): number {
  let a = 1;
  let b = 0;
  for (const byte of data) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

const SPDY_VERSION = 3;
const SYN_STREAM = 1;
const SYN_REPLY = 2;
const RST_STREAM = 3;
const PING = 6;
const GOAWAY = 7;
const HEADERS = 8;
const FLAG_FIN = 0x01;
const RST_CANCEL = 5;

type SpdyHeaders = Map<string, string[]>;

interface SpdyHandler {
  onStream(id: number, headers: SpdyHeaders, fin: boolean): void;
  onData(id: number, data: Buffer, fin: boolean): void;
  onReset(id: number): void;
  onGoAway(): void;
  onProtocolError(message: string): void;
}

class SpdyServerSession {
  private pending: Buffer = Buffer.alloc(0);
  /** Every compressed header byte received so far: the peer uses one zlib context for the connection. */
  private compressedIn: Buffer = Buffer.alloc(0);
  private inflatedLength = 0;
  private compressorStarted = false;
  private readonly closedLocally = new Set<number>();
  private readonly reset = new Set<number>();
  private failed = false;

  constructor(
    private readonly write: (bytes: Buffer) => void,
    private readonly handler: SpdyHandler,
  ) {}

  feed(chunk: Buffer): void {
    if (this.failed) return;
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (this.pending.length >= 8 && !this.failed) {
      const length = this.pending.readUIntBE(5, 3);
      if (this.pending.length < 8 + length) return;
      const frame = this.pending.subarray(0, 8 + length);
      this.pending = this.pending.subarray(8 + length);
      try {
        this.onFrame(frame);
      } catch (err) {
        this.failed = true;
        this.handler.onProtocolError(err instanceof Error ? err.message : String(err));
      }
    }
  }

  private onFrame(frame: Buffer): void {
    const flags = frame[4]!;
    const payload = frame.subarray(8);
    if ((frame[0]! & 0x80) === 0) {
      const id = frame.readUInt32BE(0) & 0x7fffffff;
      this.handler.onData(id, payload, (flags & FLAG_FIN) !== 0);
      return;
    }
    const version = frame.readUInt16BE(0) & 0x7fff;
    if (version !== SPDY_VERSION) throw new Error(`unsupported SPDY version ${version}`);
    const type = frame.readUInt16BE(2);
    switch (type) {
      case SYN_STREAM: {
        const id = payload.readUInt32BE(0) & 0x7fffffff;
        const headers = this.decodeHeaders(payload.subarray(10));
        this.sendControl(SYN_REPLY, 0, Buffer.concat([uint32(id), this.encodeHeaders([])]));
        this.handler.onStream(id, headers, (flags & FLAG_FIN) !== 0);
        return;
      }
      case SYN_REPLY:
      case HEADERS:
        // Nothing to do with them, but their header block must go through the shared zlib context.
        this.decodeHeaders(payload.subarray(4));
        return;
      case RST_STREAM: {
        const id = payload.readUInt32BE(0) & 0x7fffffff;
        this.reset.add(id);
        this.handler.onReset(id);
        return;
      }
      case PING:
        this.sendControl(PING, 0, payload);
        return;
      case GOAWAY:
        this.handler.onGoAway();
        return;
      default:
        // SETTINGS, WINDOW_UPDATE, CREDENTIAL: ignored (no flow control here).
        return;
    }
  }

  /** Sends data on a stream (and/or a FIN). Nothing is sent on streams the peer reset or we finished. */
  sendData(id: number, data: Buffer, fin = false): void {
    if (this.closedLocally.has(id) || this.reset.has(id)) return;
    const max = 0xffffff; // 24-bit length field
    let offset = 0;
    do {
      const chunk = data.subarray(offset, offset + max);
      offset += chunk.length;
      const last = offset >= data.length;
      const header = Buffer.alloc(8);
      header.writeUInt32BE(id & 0x7fffffff, 0);
      header.writeUInt32BE((((fin && last ? FLAG_FIN : 0) << 24) | chunk.length) >>> 0, 4);
      this.write(Buffer.concat([header, chunk]));
    } while (offset < data.length);
    if (fin) this.closedLocally.add(id);
  }

  resetStream(id: number): void {
    if (this.reset.has(id)) return;
    this.reset.add(id);
    this.sendControl(RST_STREAM, 0, Buffer.concat([uint32(id), uint32(RST_CANCEL)]));
  }

  private sendControl(type: number, flags: number, payload: Buffer): void {
    const header = Buffer.alloc(8);
    header.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
    header.writeUInt16BE(type, 2);
    header.writeUInt32BE(((flags << 24) | payload.length) >>> 0, 4);
    this.write(Buffer.concat([header, payload]));
  }

  private decodeHeaders(block: Buffer): SpdyHeaders {
    // Re-inflate everything received so far (the context spans the connection) and keep the new output.
    // Quadratic, but a session carries a handful of small header blocks.
    this.compressedIn = Buffer.concat([this.compressedIn, block]);
    const out = zlib.inflateSync(this.compressedIn, { dictionary: SPDY_DICTIONARY, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    const raw = out.subarray(this.inflatedLength);
    this.inflatedLength = out.length;
    const headers: SpdyHeaders = new Map();
    let pos = 0;
    const count = raw.readUInt32BE(pos);
    pos += 4;
    for (let i = 0; i < count; i++) {
      const nameLength = raw.readUInt32BE(pos);
      const name = raw.subarray(pos + 4, pos + 4 + nameLength).toString('latin1');
      pos += 4 + nameLength;
      const valueLength = raw.readUInt32BE(pos);
      const value = raw.subarray(pos + 4, pos + 4 + valueLength).toString('latin1');
      pos += 4 + valueLength;
      headers.set(name.toLowerCase(), value.split('\0'));
    }
    return headers;
  }

  /** A header block as zlib "stored" blocks followed by an empty one (what a sync flush ends with). */
  private encodeHeaders(pairs: Array<[string, string]>): Buffer {
    const rawParts: Buffer[] = [uint32(pairs.length)];
    for (const [name, value] of pairs) {
      const n = Buffer.from(name.toLowerCase(), 'latin1');
      const v = Buffer.from(value, 'latin1');
      rawParts.push(uint32(n.length), n, uint32(v.length), v);
    }
    const raw = Buffer.concat(rawParts);
    const out: Buffer[] = [];
    if (!this.compressorStarted) {
      // CMF 0x78 (deflate, 32K window), FLG 0x20 (FDICT; 0x7820 % 31 == 0), then the dictionary's Adler-32.
      out.push(Buffer.from([0x78, 0x20]), uint32(adler32(SPDY_DICTIONARY)));
      this.compressorStarted = true;
    }
    for (let offset = 0; offset < raw.length; offset += 0xffff) {
      const chunk = raw.subarray(offset, offset + 0xffff);
      const head = Buffer.alloc(5);
      head[0] = 0x00; // BFINAL=0, BTYPE=00 (stored)
      head.writeUInt16LE(chunk.length, 1);
      head.writeUInt16LE(~chunk.length & 0xffff, 3);
      out.push(head, chunk);
    }
    out.push(Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]));
    return Buffer.concat(out);
  }
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

// ---------------------------------------------------------------------------------------------------
// The fake container's exec behaviour, shared by the WebSocket and SPDY transports

interface ExecParams {
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

interface ExecResult {
  exitCode: number;
}

function execParams(url: URL): ExecParams {
  const flag = (name: string) => ['true', '1'].includes(url.searchParams.get(name) ?? '');
  return { command: url.searchParams.getAll('command'), stdin: flag('stdin'), stdout: flag('stdout'), stderr: flag('stderr'), tty: flag('tty') };
}

/**
 * Runs the fake command. `writeStdout` gets the output; the returned object takes stdin. `done` is called
 * once with the result.
 */
function runFakeCommand(params: ExecParams, writeStdout: (data: Buffer) => void, done: (result: ExecResult) => void): { stdin(data: Buffer): void; stdinClosed(): void } {
  let finished = false;
  const finish = (result: ExecResult) => {
    if (finished) return;
    finished = true;
    done(result);
  };
  const exit = params.command[0] === 'exit' ? Number.parseInt(params.command[1] ?? '0', 10) : undefined;
  if (exit !== undefined) {
    queueMicrotask(() => finish({ exitCode: Number.isNaN(exit) ? 1 : exit }));
  } else {
    writeStdout(Buffer.from(`${params.command.join(' ')}\n`));
    if (!params.stdin) queueMicrotask(() => finish({ exitCode: 0 }));
  }
  return {
    stdin: (data) => {
      if (!finished && params.stdin) writeStdout(data);
    },
    stdinClosed: () => finish({ exitCode: 0 }),
  };
}

/** The error-channel message: JSON Status for v4 and later, plain text (nothing on success) before. */
function execStatusMessage(result: ExecResult, command: string[], jsonStatus: boolean): Buffer | undefined {
  if (result.exitCode === 0) return jsonStatus ? Buffer.from(JSON.stringify({ metadata: {}, status: 'Success' })) : undefined;
  const message = `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${result.exitCode}`;
  if (!jsonStatus) return Buffer.from(message);
  return Buffer.from(
    JSON.stringify({ metadata: {}, status: 'Failure', message, reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: String(result.exitCode) }] } }),
  );
}

const WS_EXEC_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];
const WS_PORTFORWARD_PROTOCOLS = ['SPDY/3.1+portforward.k8s.io'];
const SPDY_EXEC_PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];
const SPDY_PORTFORWARD_PROTOCOLS = ['portforward.k8s.io'];

const CHANNEL_STDIN = 0;
const CHANNEL_STDOUT = 1;
const CHANNEL_ERROR = 3;
const CHANNEL_CLOSE = 255;

/** Exec over a WebSocket (`v5.channel.k8s.io` / `v4.channel.k8s.io`): one channel byte, then data. */
function execOverWebSocket(ws: WebSocket, params: ExecParams): void {
  const send = (channel: number, data: Buffer) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.concat([Buffer.from([channel]), data]), { binary: true });
  };
  const command = runFakeCommand(
    params,
    (data) => {
      if (params.stdout) send(CHANNEL_STDOUT, data);
    },
    (result) => {
      send(CHANNEL_ERROR, execStatusMessage(result, params.command, true)!);
      if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    },
  );
  ws.on('message', (message: Buffer, isBinary: boolean) => {
    if (!isBinary || message.length === 0) return;
    if (message[0] === CHANNEL_STDIN) command.stdin(message.subarray(1));
    else if (message[0] === CHANNEL_CLOSE && message[1] === CHANNEL_STDIN) command.stdinClosed(); // v5 only
    // The resize channel (4) and the close signal for other channels are ignored.
  });
  // v4 has no close signal: stdin ends with the connection.
  ws.on('close', () => command.stdinClosed());
}

/** Exec over SPDY/3.1: waits for the streams the query asks for (like the kubelet), then runs. */
function execOverSpdy(write: (bytes: Buffer) => void, end: () => void, params: ExecParams, protocol: string): SpdyServerSession {
  const streams = new Map<string, number>();
  const versioned = /^v(\d+)\./.exec(protocol);
  const version = versioned ? Number(versioned[1]) : 1;
  const expected = 1 + (params.stdin ? 1 : 0) + (params.stdout ? 1 : 0) + (params.stderr ? 1 : 0) + (params.tty && version >= 3 ? 1 : 0);
  let command: ReturnType<typeof runFakeCommand> | undefined;
  const bufferedStdin: Array<Buffer | 'end'> = [];
  const session: SpdyServerSession = new SpdyServerSession(write, {
    onStream(id, headers) {
      const type = headers.get('streamtype')?.[0] ?? '';
      streams.set(type, id);
      if (streams.size < expected || command) return;
      command = runFakeCommand(
        params,
        (data) => {
          const stdout = streams.get('stdout');
          if (stdout !== undefined) session.sendData(stdout, data);
        },
        (result) => {
          for (const type of ['stdout', 'stderr']) {
            const id = streams.get(type);
            if (id !== undefined) session.sendData(id, Buffer.alloc(0), true);
          }
          const message = execStatusMessage(result, params.command, version >= 4);
          session.sendData(streams.get('error')!, message ?? Buffer.alloc(0), true);
          // The client resets its streams and closes the connection when it has read everything.
        },
      );
      for (const item of bufferedStdin.splice(0)) {
        if (item === 'end') command.stdinClosed();
        else command.stdin(item);
      }
    },
    onData(id, data, fin) {
      if (id !== streams.get('stdin')) return; // error-stream half-close, resize events: ignored
      if (data.length) {
        if (command) command.stdin(data);
        else bufferedStdin.push(data);
      }
      if (fin) {
        if (command) command.stdinClosed();
        else bufferedStdin.push('end');
      }
    },
    onReset() {},
    onGoAway: end,
    onProtocolError: end,
  });
  return session;
}

/** Port-forward over SPDY/3.1 (plain or tunnelled in a WebSocket): every port is an echo server. */
function portForwardOverSpdy(write: (bytes: Buffer) => void, end: () => void): SpdyServerSession {
  const pairs = new Map<string, { error?: number; data?: number }>();
  const dataStreams = new Map<number, string>();
  const session: SpdyServerSession = new SpdyServerSession(write, {
    onStream(id, headers) {
      const type = headers.get('streamtype')?.[0];
      const requestId = headers.get('requestid')?.[0] ?? String(id);
      const pair = pairs.get(requestId) ?? {};
      pairs.set(requestId, pair);
      if (type === 'error') pair.error = id;
      else if (type === 'data') {
        pair.data = id;
        dataStreams.set(id, requestId);
      } else session.resetStream(id);
    },
    onData(id, data, fin) {
      const requestId = dataStreams.get(id);
      if (requestId === undefined) return; // the client half-closes the error stream: nothing to do
      if (data.length) session.sendData(id, data); // echo
      if (fin) {
        session.sendData(id, Buffer.alloc(0), true);
        const errorStream = pairs.get(requestId)?.error;
        if (errorStream !== undefined) session.sendData(errorStream, Buffer.alloc(0), true);
        pairs.delete(requestId);
        dataStreams.delete(id);
      }
    },
    onReset(id) {
      const requestId = dataStreams.get(id);
      if (requestId === undefined) return;
      const errorStream = pairs.get(requestId)?.error;
      if (errorStream !== undefined) session.sendData(errorStream, Buffer.alloc(0), true);
      pairs.delete(requestId);
      dataStreams.delete(id);
    },
    onGoAway: end,
    onProtocolError: end,
  });
  return session;
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
  server.on('clientError', (_err, socket) => socket.destroy());
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
