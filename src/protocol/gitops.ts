/**
 * GitOps manifests on the wire. agentk opens one `gitops_manifests` stream per manifest project and
 * keeps it open; kas answers with a REPLY head and then sends a snapshot of the project's manifest
 * files whenever the commit (or the project's settings) differs from what agentk has: a header
 * record, one record per file and an end record, each a length-prefixed msgpack map. agentk's OPEN
 * head carries the commit it has, so a reconnect resumes without the files being sent again.
 * docs/protocol.md ("GitOps manifest streams") is the normative description.
 *
 * Both sides check everything: the decoder bounds every record before buffering it, and the
 * assembler bounds the number of files, each file and the whole snapshot by the limits below (the
 * same limits kas applies when it reads a project).
 */
import { Packr, Unpackr } from 'msgpackr';
import { TunnelError } from './errors.js';
import type { Head, WireValue } from './frames.js';

/** Stream type tag (`t` in the OPEN head). */
export const GITOPS_MANIFESTS_STREAM = 'gitops_manifests';

/** Most `paths[]` globs of one manifest project. */
export const MAX_MANIFEST_PATHS = 100;
/** Most files of one snapshot. */
export const MAX_MANIFEST_FILES = 1000;
/** Largest manifest file, bytes (5 MiB). */
export const MAX_MANIFEST_FILE_BYTES = 5 * 1024 * 1024;
/** Largest snapshot (sum of its files), bytes (20 MiB). */
export const MAX_MANIFEST_PROJECT_BYTES = 20 * 1024 * 1024;
/** Longest file path inside a project, bytes of UTF-8. */
export const MAX_MANIFEST_PATH_LENGTH = 4096;
/** Longest project id (a project's full path, or its number) in the head. */
export const MAX_PROJECT_ID_LENGTH = 1024;
/** Longest commit string (a git commit id, or `sha256:<hex>` of a directory). */
export const MAX_COMMIT_LENGTH = 256;
/** Longest settings digest. */
export const MAX_DIGEST_LENGTH = 128;
/** Most errors listed in one snapshot header (kas summarises the rest in the last one). */
export const MAX_SNAPSHOT_ERRORS = 100;
/** Longest error message. */
export const MAX_ERROR_MESSAGE_LENGTH = 1024;
/** Largest header or end record, bytes. */
export const MAX_CONTROL_RECORD_BYTES = 256 * 1024;
/** Largest file record: a file at the limit plus its path and framing. */
export const MAX_FILE_RECORD_BYTES = MAX_MANIFEST_FILE_BYTES + MAX_MANIFEST_PATH_LENGTH + 64;
/** Bytes of the length prefix of each record (unsigned 32-bit, big-endian). */
export const RECORD_PREFIX_BYTES = 4;

/**
 * Codes of the problems a snapshot lists (`errors[].code`). Each is also counted by kas
 * (`kas_gitops_errors_total{code}`) and logged; docs/gitops.md describes them.
 */
export const MANIFEST_ERROR_CODES = {
  MANIFEST_PROJECT_FORBIDDEN: 'The agent may not read the project, or GitLab does not know it (project_info answered 403 or 404).',
  MANIFEST_PROJECT_NOT_FOUND: 'Standalone mode: no entry of standalone.manifest_projects has this id; or the project has no repository.',
  MANIFEST_REF_NOT_FOUND: 'The branch, tag or commit named by ref does not exist (the default branch when ref is absent).',
  MANIFEST_SOURCE_FAILED: 'The source could not be read (git failed, the directory is missing); kas tries again at the next poll.',
  MANIFEST_INVALID_GLOB: 'A paths[].glob cannot be used (empty, or it climbs out of the repository with "..").',
  MANIFEST_TOO_MANY_PATHS: `The project lists more than ${MAX_MANIFEST_PATHS} paths[] globs; none is read.`,
  MANIFEST_TOO_MANY_FILES: `The globs match more than ${MAX_MANIFEST_FILES} files; the first ${MAX_MANIFEST_FILES} in path order are sent.`,
  MANIFEST_FILE_TOO_LARGE: `A matching file is larger than ${MAX_MANIFEST_FILE_BYTES} bytes (5 MiB); it is left out.`,
  MANIFEST_PROJECT_TOO_LARGE: `The matching files add up to more than ${MAX_MANIFEST_PROJECT_BYTES} bytes (20 MiB); the files past the limit are left out.`,
  MANIFEST_DUPLICATE_FILE: 'A file is matched by more than one glob; it is sent once and the snapshot is incomplete.',
  MANIFEST_INVALID_PATH: `A matching path cannot be sent (not UTF-8, longer than ${MAX_MANIFEST_PATH_LENGTH} bytes, or not a regular file); it is left out.`,
  MANIFEST_FILE_UNREADABLE: 'A matching file could not be read; it is left out.',
} as const;
export type ManifestErrorCode = keyof typeof MANIFEST_ERROR_CODES;

export const DRY_RUN_STRATEGIES = ['none', 'client', 'server'] as const;
export const PRUNE_PROPAGATION_POLICIES = ['orphan', 'background', 'foreground'] as const;
export const INVENTORY_POLICIES = ['must_match', 'adopt_if_no_inventory', 'adopt_all'] as const;

/** How agentk applies a project: the project's keys of the agent configuration, with defaults filled in. */
export interface ManifestSettingsWire {
  default_namespace: string;
  /** Milliseconds. */
  reconcile_timeout: number;
  dry_run_strategy: (typeof DRY_RUN_STRATEGIES)[number];
  prune: boolean;
  /** Milliseconds. */
  prune_timeout: number;
  prune_propagation_policy: (typeof PRUNE_PROPAGATION_POLICIES)[number];
  inventory_policy: (typeof INVENTORY_POLICIES)[number];
}

export interface ManifestProblem {
  code: string;
  message: string;
  path?: string;
}

export interface ManifestOpenHead {
  projectId: string;
  /** The commit agentk has (last received or applied); kas sends nothing until it differs. */
  commit?: string;
  /** The settings digest agentk has with that commit (from the snapshot header). */
  settingsDigest?: string;
}

export interface ManifestReplyHead {
  accepted: boolean;
  /** Why not (when accepted is false): for logs. */
  reason?: string;
}

export interface SnapshotHeader {
  /** The commit the files were read at; '' when nothing could be read (errors say why; no files). */
  commit: string;
  settings: ManifestSettingsWire;
  /** Digest of `settings` (kas computes it; agentk echoes it in its next OPEN head). */
  settingsDigest: string;
  /** False when some matching file is missing from the snapshot: the applier must not prune. */
  complete: boolean;
  errors: ManifestProblem[];
  /** Number of file records that follow. */
  files: number;
  /** Sum of the files' sizes. */
  bytes: number;
}

export interface FileRecord {
  path: string;
  data: Uint8Array;
}

export type ManifestRecord = ({ kind: 'snapshot' } & SnapshotHeader) | ({ kind: 'file' } & FileRecord) | { kind: 'end'; commit: string };

function bad(message: string): TunnelError {
  return new TunnelError('PROTOCOL_ERROR', `invalid gitops_manifests message: ${message}`);
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function boundedString(v: unknown, what: string, max: number, allowEmpty = false): string {
  if (typeof v !== 'string' || (!allowEmpty && v === '') || v.length > max) throw bad(`${what} must be a ${allowEmpty ? '' : 'non-empty '}string of at most ${max} characters`);
  return v;
}

function optionalString(v: unknown, what: string, max: number): string | undefined {
  if (v === undefined || v === null) return undefined;
  return boundedString(v, what, max);
}

// ---- heads ------------------------------------------------------------------------------------

export function encodeManifestOpenHead(h: ManifestOpenHead): Head {
  const head: Head = { t: GITOPS_MANIFESTS_STREAM, project_id: h.projectId };
  if (h.commit !== undefined) head.commit = h.commit;
  if (h.settingsDigest !== undefined) head.settings_digest = h.settingsDigest;
  return head;
}

/** Checks agentk's OPEN head. Throws TunnelError PROTOCOL_ERROR naming what is wrong. */
export function decodeManifestOpenHead(head: Head): ManifestOpenHead {
  if (head.t !== GITOPS_MANIFESTS_STREAM) throw bad(`stream type must be "${GITOPS_MANIFESTS_STREAM}"`);
  const projectId = boundedString(head.project_id, 'project_id', MAX_PROJECT_ID_LENGTH);
  const commit = optionalString(head.commit, 'commit', MAX_COMMIT_LENGTH);
  const settingsDigest = optionalString(head.settings_digest, 'settings_digest', MAX_DIGEST_LENGTH);
  return { projectId, ...(commit !== undefined && { commit }), ...(settingsDigest !== undefined && { settingsDigest }) };
}

export function encodeManifestReplyHead(r: ManifestReplyHead): Head {
  return r.accepted ? { accepted: true } : { accepted: false, reason: (r.reason ?? 'refused').slice(0, MAX_ERROR_MESSAGE_LENGTH) };
}

/** Checks kas's REPLY head. Throws TunnelError PROTOCOL_ERROR naming what is wrong. */
export function decodeManifestReplyHead(head: Head): ManifestReplyHead {
  if (typeof head.accepted !== 'boolean') throw bad('accepted must be a boolean');
  if (head.accepted) return { accepted: true };
  return { accepted: false, reason: optionalString(head.reason, 'reason', MAX_ERROR_MESSAGE_LENGTH) ?? 'refused' };
}

// ---- records ----------------------------------------------------------------------------------

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
// As for frames: no msgpackr extensions, so a small record cannot name a value many times.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, moreTypes: false, structuredClone: false });

function framed(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(RECORD_PREFIX_BYTES + body.byteLength);
  out.writeUInt32BE(body.byteLength, 0);
  out.set(body, RECORD_PREFIX_BYTES);
  return out;
}

function settingsWire(s: ManifestSettingsWire): { [key: string]: WireValue } {
  return { ...s };
}

/** The header record of a snapshot, length-prefixed. */
export function encodeSnapshotHeader(h: SnapshotHeader): Buffer {
  return framed(
    packr.pack({
      k: 'snapshot',
      commit: h.commit,
      settings: settingsWire(h.settings),
      settings_digest: h.settingsDigest,
      complete: h.complete,
      errors: h.errors.map((e) => ({ code: e.code, message: e.message.slice(0, MAX_ERROR_MESSAGE_LENGTH), ...(e.path !== undefined && { path: e.path }) })),
      files: h.files,
      bytes: h.bytes,
    }),
  );
}

/** One file record, length-prefixed. */
export function encodeFileRecord(f: FileRecord): Buffer {
  return framed(packr.pack({ k: 'file', path: f.path, data: f.data }));
}

/** The end record of a snapshot, length-prefixed. */
export function encodeEndRecord(commit: string): Buffer {
  return framed(packr.pack({ k: 'end', commit }));
}

/** A relative path inside a repository: no leading "/", no "." or ".." segment, no empty segment, no NUL. */
export function isSafeManifestPath(p: string): boolean {
  if (p === '' || Buffer.byteLength(p) > MAX_MANIFEST_PATH_LENGTH || p.includes('\0') || p.includes('\\')) return false;
  return p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

function oneOf<T extends string>(v: unknown, what: string, values: readonly T[]): T {
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) throw bad(`${what} must be one of ${values.join(', ')}`);
  return v as T;
}

function nonNegativeInt(v: unknown, what: string, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) throw bad(`${what} must be an integer from 0 to ${max}`);
  return v;
}

const MAX_TIMEOUT_MS = 7 * 24 * 3600 * 1000;

export function decodeSettings(v: unknown): ManifestSettingsWire {
  if (!isMap(v)) throw bad('settings must be a map');
  const ns = boundedString(v.default_namespace, 'settings.default_namespace', 63);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns)) throw bad('settings.default_namespace must be a Kubernetes namespace name');
  if (typeof v.prune !== 'boolean') throw bad('settings.prune must be a boolean');
  return {
    default_namespace: ns,
    reconcile_timeout: nonNegativeInt(v.reconcile_timeout, 'settings.reconcile_timeout', MAX_TIMEOUT_MS),
    dry_run_strategy: oneOf(v.dry_run_strategy, 'settings.dry_run_strategy', DRY_RUN_STRATEGIES),
    prune: v.prune,
    prune_timeout: nonNegativeInt(v.prune_timeout, 'settings.prune_timeout', MAX_TIMEOUT_MS),
    prune_propagation_policy: oneOf(v.prune_propagation_policy, 'settings.prune_propagation_policy', PRUNE_PROPAGATION_POLICIES),
    inventory_policy: oneOf(v.inventory_policy, 'settings.inventory_policy', INVENTORY_POLICIES),
  };
}

function decodeProblems(v: unknown): ManifestProblem[] {
  if (!Array.isArray(v) || v.length > MAX_SNAPSHOT_ERRORS) throw bad(`errors must be a list of at most ${MAX_SNAPSHOT_ERRORS} entries`);
  return v.map((e, i) => {
    if (!isMap(e)) throw bad(`errors[${i}] must be a map`);
    const code = boundedString(e.code, `errors[${i}].code`, 64);
    const message = boundedString(e.message, `errors[${i}].message`, MAX_ERROR_MESSAGE_LENGTH, true);
    const path = optionalString(e.path, `errors[${i}].path`, MAX_MANIFEST_PATH_LENGTH);
    return { code, message, ...(path !== undefined && { path }) };
  });
}

/** Decodes the msgpack body of one record (without its prefix). Throws TunnelError PROTOCOL_ERROR. */
export function decodeRecordBody(body: Uint8Array): ManifestRecord {
  let v: unknown;
  try {
    v = unpackr.unpack(body);
  } catch {
    throw bad('a record is not valid msgpack');
  }
  if (!isMap(v)) throw bad('a record must be a map');
  switch (v.k) {
    case 'snapshot': {
      if (body.byteLength > MAX_CONTROL_RECORD_BYTES) throw bad('the snapshot header is too large');
      const commit = boundedString(v.commit, 'commit', MAX_COMMIT_LENGTH, true);
      if (typeof v.complete !== 'boolean') throw bad('complete must be a boolean');
      const files = nonNegativeInt(v.files, 'files', MAX_MANIFEST_FILES);
      const bytes = nonNegativeInt(v.bytes, 'bytes', MAX_MANIFEST_PROJECT_BYTES);
      if (commit === '' && (files > 0 || v.complete)) throw bad('a snapshot without a commit has no files and is not complete');
      return {
        kind: 'snapshot',
        commit,
        settings: decodeSettings(v.settings),
        settingsDigest: boundedString(v.settings_digest, 'settings_digest', MAX_DIGEST_LENGTH),
        complete: v.complete,
        errors: decodeProblems(v.errors),
        files,
        bytes,
      };
    }
    case 'file': {
      const path = boundedString(v.path, 'path', MAX_MANIFEST_PATH_LENGTH);
      if (!isSafeManifestPath(path)) throw bad(`path ${JSON.stringify(path.slice(0, 200))} is not a relative path inside the project`);
      if (!(v.data instanceof Uint8Array)) throw bad('data must be binary');
      if (v.data.byteLength > MAX_MANIFEST_FILE_BYTES) throw bad(`file ${path} is larger than ${MAX_MANIFEST_FILE_BYTES} bytes`);
      return { kind: 'file', path, data: v.data };
    }
    case 'end':
      if (body.byteLength > MAX_CONTROL_RECORD_BYTES) throw bad('the end record is too large');
      return { kind: 'end', commit: boundedString(v.commit, 'commit', MAX_COMMIT_LENGTH, true) };
    default:
      throw bad('a record must have k = "snapshot", "file" or "end"');
  }
}

/**
 * Splits a byte stream into records. Each length prefix is checked against MAX_FILE_RECORD_BYTES
 * before anything of the record is buffered, so at most one record (plus one chunk) is held.
 */
export class ManifestRecordDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Feeds bytes; returns the records completed by them. Throws TunnelError PROTOCOL_ERROR. */
  push(chunk: Uint8Array): ManifestRecord[] {
    this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.buffered += chunk.byteLength;
    const out: ManifestRecord[] = [];
    for (;;) {
      if (this.buffered < RECORD_PREFIX_BYTES) return out;
      if (this.chunks[0]!.byteLength < RECORD_PREFIX_BYTES) this.chunks = [Buffer.concat(this.chunks)];
      const length = this.chunks[0]!.readUInt32BE(0);
      if (length === 0 || length > MAX_FILE_RECORD_BYTES) throw bad(`a record of ${length} bytes; records are 1 to ${MAX_FILE_RECORD_BYTES} bytes`);
      // Joined only once the whole record is here, so a large record is copied once.
      if (this.buffered < RECORD_PREFIX_BYTES + length) return out;
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      out.push(decodeRecordBody(all.subarray(RECORD_PREFIX_BYTES, RECORD_PREFIX_BYTES + length)));
      const rest = all.subarray(RECORD_PREFIX_BYTES + length);
      this.chunks = rest.byteLength > 0 ? [rest] : [];
      this.buffered = rest.byteLength;
    }
  }

  /** True when no partial record is buffered (the stream may end here). */
  get idle(): boolean {
    return this.buffered === 0;
  }
}

/** A whole snapshot as received. */
export interface ReceivedSnapshot {
  header: SnapshotHeader;
  files: FileRecord[];
}

/**
 * Checks the order and bounds of records: a header, exactly `files` file records with distinct
 * paths adding up to `bytes` (both within the limits), then an end record naming the same commit.
 */
export class SnapshotAssembler {
  private header: SnapshotHeader | null = null;
  private files: FileRecord[] = [];
  private paths = new Set<string>();
  private bytes = 0;

  /** Takes one record; returns the snapshot when this record completed one. Throws TunnelError PROTOCOL_ERROR. */
  take(r: ManifestRecord): ReceivedSnapshot | null {
    if (r.kind === 'snapshot') {
      if (this.header) throw bad('a snapshot header before the previous snapshot ended');
      this.header = { commit: r.commit, settings: r.settings, settingsDigest: r.settingsDigest, complete: r.complete, errors: r.errors, files: r.files, bytes: r.bytes };
      return null;
    }
    const h = this.header;
    if (!h) throw bad(`a ${r.kind} record outside a snapshot`);
    if (r.kind === 'file') {
      if (this.files.length >= h.files) throw bad(`more than the ${h.files} files the header announced`);
      if (this.paths.has(r.path)) throw bad(`file ${r.path} sent twice`);
      this.bytes += r.data.byteLength;
      if (this.bytes > h.bytes) throw bad(`more than the ${h.bytes} bytes the header announced`);
      this.paths.add(r.path);
      this.files.push({ path: r.path, data: r.data });
      return null;
    }
    if (r.commit !== h.commit) throw bad('the end record names another commit than the header');
    if (this.files.length !== h.files || this.bytes !== h.bytes) throw bad(`the snapshot ended after ${this.files.length} files and ${this.bytes} bytes; the header announced ${h.files} and ${h.bytes}`);
    const done = { header: h, files: this.files };
    this.header = null;
    this.files = [];
    this.paths = new Set();
    this.bytes = 0;
    return done;
  }

  /** True between snapshots. */
  get idle(): boolean {
    return this.header === null;
  }
}
