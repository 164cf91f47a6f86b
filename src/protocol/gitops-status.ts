/**
 * GitOps apply results on the wire. After each apply of a manifest project (a new commit, or the
 * periodic reconcile), the leader agentk opens a `gitops_status` stream towards kas whose OPEN head
 * names the project, sends the result as UTF-8 JSON stream data and ends its direction; kas checks
 * it, keeps it (the latest per agent and project) and answers with a REPLY head `{accepted: true}`
 * and end. Anything malformed or too large is reset with PROTOCOL_ERROR; the session goes on.
 * docs/protocol.md ("GitOps status streams") is the normative description.
 */
import { TunnelError } from './errors.js';
import type { Head } from './frames.js';

/** Stream type tag (`t` in the OPEN head). */
export const GITOPS_STATUS_STREAM = 'gitops_status';

/** Largest result document, bytes of JSON. */
export const MAX_GITOPS_STATUS_BYTES = 1024 * 1024;
/** Most objects listed in one result (unchanged objects are only counted). */
export const MAX_STATUS_OBJECTS = 2000;
/** Most errors listed in one result. */
export const MAX_STATUS_ERRORS = 500;
/** Longest project id. */
export const MAX_STATUS_PROJECT_ID_LENGTH = 1024;
/** Longest commit. */
export const MAX_STATUS_COMMIT_LENGTH = 256;
/** Longest text field (reason, message, path). */
export const MAX_STATUS_TEXT_LENGTH = 1024;
/** Longest name-like field (group, kind, namespace, name, code). */
export const MAX_STATUS_NAME_LENGTH = 253;

/** Codes of the problems an apply reports (`errors[].code`), besides the MANIFEST_* codes kas puts in a snapshot. docs/gitops.md lists them. */
export const APPLY_ERROR_CODES = {
  GITOPS_INVALID_MANIFEST: 'A file is not valid YAML or JSON, or a document is not a Kubernetes object (apiVersion, kind, metadata.name).',
  GITOPS_DUPLICATE_OBJECT: 'The same object (group, kind, namespace, name) is defined more than once; the first one is applied.',
  GITOPS_UNKNOWN_KIND: 'The API server serves no such kind (a typo, or a custom resource whose definition is missing or not established).',
  GITOPS_INVENTORY_CONFLICT: 'The object exists and belongs to another inventory or to none; inventory_policy refuses to take it over.',
  GITOPS_APPLY_FAILED: 'The API server refused the object (validation, admission, RBAC) or did not answer.',
  GITOPS_CRD_NOT_ESTABLISHED: 'A CustomResourceDefinition did not become Established in time; its custom resources may fail.',
  GITOPS_INVENTORY_FAILED: 'The inventory ConfigMap could not be read or written; nothing is pruned.',
  GITOPS_PRUNE_FAILED: 'An object that left the manifests could not be deleted; it stays in the inventory and is tried again.',
  GITOPS_TOO_MANY_OBJECTS: 'The manifests hold more objects than agentk applies at once (10,000).',
} as const;

export const OBJECT_ACTIONS = ['created', 'configured', 'unchanged', 'validated', 'failed', 'pruned', 'prune_failed', 'prune_skipped'] as const;
export type ObjectActionWire = (typeof OBJECT_ACTIONS)[number];
export const APPLY_TRIGGERS = ['snapshot', 'reconcile'] as const;
export const DRY_RUNS = ['none', 'client', 'server'] as const;

export interface GitopsStatusHead {
  projectId: string;
}

export interface ObjectStatusWire {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  action: ObjectActionWire;
  source?: string;
  adopted?: boolean;
  reason?: string;
}

export interface ApplyErrorWire {
  code: string;
  message: string;
  path?: string;
  object?: string;
}

/** One apply of one project, as agentk reports it (snake_case keys on the wire and in the API). */
export interface GitopsStatusWire {
  project_id: string;
  commit: string;
  trigger: (typeof APPLY_TRIGGERS)[number];
  dry_run: (typeof DRY_RUNS)[number];
  started_at: string;
  duration_ms: number;
  applied: number;
  unchanged: number;
  pruned: number;
  failed: number;
  prune_skipped?: string;
  /** Every object but the unchanged ones (they are counted), at most MAX_STATUS_OBJECTS. */
  objects: ObjectStatusWire[];
  /** Objects left out of `objects` by the bound. */
  objects_omitted: number;
  errors: ApplyErrorWire[];
  /** Errors left out of `errors` by the bound. */
  errors_omitted: number;
}

function bad(message: string): TunnelError {
  return new TunnelError('PROTOCOL_ERROR', `invalid gitops_status message: ${message}`);
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

export function encodeGitopsStatusHead(h: GitopsStatusHead): Head {
  return { t: GITOPS_STATUS_STREAM, project_id: h.projectId };
}

export function decodeGitopsStatusHead(head: Head): GitopsStatusHead {
  if (head.t !== GITOPS_STATUS_STREAM) throw bad(`stream type must be "${GITOPS_STATUS_STREAM}"`);
  const id = head.project_id;
  if (typeof id !== 'string' || id === '' || id.length > MAX_STATUS_PROJECT_ID_LENGTH) throw bad(`project_id must be a non-empty string of at most ${MAX_STATUS_PROJECT_ID_LENGTH} characters`);
  return { projectId: id };
}

export function encodeGitopsStatusReply(accepted: boolean, reason?: string): Head {
  return reason === undefined ? { accepted } : { accepted, reason: reason.slice(0, MAX_STATUS_TEXT_LENGTH) };
}

export function decodeGitopsStatusReply(head: Head): { accepted: boolean; reason?: string } {
  if (typeof head.accepted !== 'boolean') throw bad('the reply needs a boolean accepted');
  return typeof head.reason === 'string' ? { accepted: head.accepted, reason: head.reason.slice(0, MAX_STATUS_TEXT_LENGTH) } : { accepted: head.accepted };
}

const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/**
 * The stream data: the result as JSON, bounded: texts cut, objects and errors beyond the limits
 * counted in `*_omitted`, and fewer of them listed until the document fits MAX_GITOPS_STATUS_BYTES.
 */
export function encodeGitopsStatus(s: GitopsStatusWire): Uint8Array {
  const objects = s.objects.slice(0, MAX_STATUS_OBJECTS).map((o) => ({
    ...o,
    group: cut(o.group, MAX_STATUS_NAME_LENGTH),
    kind: cut(o.kind, MAX_STATUS_NAME_LENGTH),
    namespace: cut(o.namespace, MAX_STATUS_NAME_LENGTH),
    name: cut(o.name, MAX_STATUS_NAME_LENGTH),
    source: o.source === undefined ? undefined : cut(o.source, MAX_STATUS_TEXT_LENGTH),
    reason: o.reason === undefined ? undefined : cut(o.reason, MAX_STATUS_TEXT_LENGTH),
  }));
  const errors = s.errors.slice(0, MAX_STATUS_ERRORS).map((e) => ({
    ...e,
    code: cut(e.code, MAX_STATUS_NAME_LENGTH),
    message: cut(e.message, MAX_STATUS_TEXT_LENGTH),
    path: e.path === undefined ? undefined : cut(e.path, MAX_STATUS_TEXT_LENGTH),
    object: e.object === undefined ? undefined : cut(e.object, MAX_STATUS_TEXT_LENGTH),
  }));
  let objectCount = objects.length;
  let errorCount = errors.length;
  for (;;) {
    const doc: GitopsStatusWire = {
      ...s,
      project_id: cut(s.project_id, MAX_STATUS_PROJECT_ID_LENGTH),
      commit: cut(s.commit, MAX_STATUS_COMMIT_LENGTH),
      prune_skipped: s.prune_skipped === undefined ? undefined : cut(s.prune_skipped, MAX_STATUS_TEXT_LENGTH),
      objects: objects.slice(0, objectCount),
      objects_omitted: s.objects_omitted + (s.objects.length - objectCount),
      errors: errors.slice(0, errorCount),
      errors_omitted: s.errors_omitted + (s.errors.length - errorCount),
    };
    const data = Buffer.from(JSON.stringify(doc), 'utf8');
    if (data.byteLength <= MAX_GITOPS_STATUS_BYTES || (objectCount === 0 && errorCount === 0)) return data;
    if (objectCount > 0) objectCount = Math.floor(objectCount / 2);
    else errorCount = Math.floor(errorCount / 2);
  }
}

function text(v: unknown, what: string, max: number, optional = false): string | undefined {
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'string' || v.length > max) throw bad(`${what} must be a string of at most ${max} characters`);
  return v;
}

function count(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${what} must be a whole number >= 0`);
  return v;
}

function oneOf<T extends string>(v: unknown, what: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) throw bad(`${what} must be one of ${allowed.join(', ')}`);
  return v as T;
}

/** Checks the stream data kas received. Throws TunnelError PROTOCOL_ERROR naming what is wrong. */
export function decodeGitopsStatus(data: Uint8Array, head: GitopsStatusHead): GitopsStatusWire {
  if (data.byteLength > MAX_GITOPS_STATUS_BYTES) throw bad(`larger than ${MAX_GITOPS_STATUS_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  if (!isMap(doc)) throw bad('must be a JSON object');
  const projectId = text(doc.project_id, 'project_id', MAX_STATUS_PROJECT_ID_LENGTH)!;
  if (projectId !== head.projectId) throw bad('project_id differs from the head');
  const startedAt = text(doc.started_at, 'started_at', 64)!;
  if (Number.isNaN(Date.parse(startedAt))) throw bad('started_at must be an RFC 3339 time');
  if (!Array.isArray(doc.objects) || doc.objects.length > MAX_STATUS_OBJECTS) throw bad(`objects must be a list of at most ${MAX_STATUS_OBJECTS}`);
  if (!Array.isArray(doc.errors) || doc.errors.length > MAX_STATUS_ERRORS) throw bad(`errors must be a list of at most ${MAX_STATUS_ERRORS}`);
  const objects = doc.objects.map((o: unknown, i): ObjectStatusWire => {
    if (!isMap(o)) throw bad(`objects[${i}] must be an object`);
    const out: ObjectStatusWire = {
      group: text(o.group, `objects[${i}].group`, MAX_STATUS_NAME_LENGTH)!,
      kind: text(o.kind, `objects[${i}].kind`, MAX_STATUS_NAME_LENGTH)!,
      namespace: text(o.namespace, `objects[${i}].namespace`, MAX_STATUS_NAME_LENGTH)!,
      name: text(o.name, `objects[${i}].name`, MAX_STATUS_NAME_LENGTH)!,
      action: oneOf(o.action, `objects[${i}].action`, OBJECT_ACTIONS),
    };
    const source = text(o.source, `objects[${i}].source`, MAX_STATUS_TEXT_LENGTH, true);
    if (source !== undefined) out.source = source;
    if (o.adopted !== undefined) {
      if (typeof o.adopted !== 'boolean') throw bad(`objects[${i}].adopted must be a boolean`);
      out.adopted = o.adopted;
    }
    const reason = text(o.reason, `objects[${i}].reason`, MAX_STATUS_TEXT_LENGTH, true);
    if (reason !== undefined) out.reason = reason;
    return out;
  });
  const errors = doc.errors.map((e: unknown, i): ApplyErrorWire => {
    if (!isMap(e)) throw bad(`errors[${i}] must be an object`);
    const out: ApplyErrorWire = { code: text(e.code, `errors[${i}].code`, MAX_STATUS_NAME_LENGTH)!, message: text(e.message, `errors[${i}].message`, MAX_STATUS_TEXT_LENGTH)! };
    const path = text(e.path, `errors[${i}].path`, MAX_STATUS_TEXT_LENGTH, true);
    if (path !== undefined) out.path = path;
    const object = text(e.object, `errors[${i}].object`, MAX_STATUS_TEXT_LENGTH, true);
    if (object !== undefined) out.object = object;
    return out;
  });
  const result: GitopsStatusWire = {
    project_id: projectId,
    commit: text(doc.commit, 'commit', MAX_STATUS_COMMIT_LENGTH)!,
    trigger: oneOf(doc.trigger, 'trigger', APPLY_TRIGGERS),
    dry_run: oneOf(doc.dry_run, 'dry_run', DRY_RUNS),
    started_at: startedAt,
    duration_ms: count(doc.duration_ms, 'duration_ms'),
    applied: count(doc.applied, 'applied'),
    unchanged: count(doc.unchanged, 'unchanged'),
    pruned: count(doc.pruned, 'pruned'),
    failed: count(doc.failed, 'failed'),
    objects,
    objects_omitted: count(doc.objects_omitted, 'objects_omitted'),
    errors,
    errors_omitted: count(doc.errors_omitted, 'errors_omitted'),
  };
  const pruneSkipped = text(doc.prune_skipped, 'prune_skipped', MAX_STATUS_TEXT_LENGTH, true);
  if (pruneSkipped !== undefined) result.prune_skipped = pruneSkipped;
  return result;
}
