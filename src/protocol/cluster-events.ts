/**
 * Cluster events on the wire: agentk opens one `agent_events` stream per session it uses and keeps
 * it open; its data is a sequence of batches, each a 4-byte big-endian length followed by that many
 * bytes of msgpack: an array of records, each itself a msgpack byte string (so the size of every
 * record is known before it is decoded). Everything here is checked strictly on kas's side: a batch
 * or record over its cap, a shape that is not exactly the one below, or a value out of range is a
 * PROTOCOL_ERROR that resets the stream. docs/protocol.md ("Cluster event streams") is the normative
 * description.
 */
import { Packr, Unpackr } from 'msgpackr';
import { TunnelError } from './errors.js';
import type { Head } from './frames.js';

/** Stream type tag of cluster event streams (`t` in the OPEN head). */
export const AGENT_EVENTS_STREAM = 'agent_events';
/** The version of the record format in the OPEN head (`v`). */
export const AGENT_EVENTS_VERSION = 1;

/** Largest encoded record (one msgpack byte string of the batch). */
export const MAX_EVENT_RECORD_BYTES = 8 * 1024;
/** Most records in one batch. */
export const MAX_EVENT_BATCH_RECORDS = 64;
/** Largest batch (the length prefix's value). */
export const MAX_EVENT_BATCH_BYTES = 128 * 1024;
/** Bytes of the length prefix of a batch. */
export const EVENT_BATCH_PREFIX_BYTES = 4;

/** Longest strings of a record, in UTF-16 code units; agentk truncates before sending, kas refuses longer. */
export const EVENT_LIMITS = {
  type: 32,
  reason: 128,
  message: 1024,
  reporter: 128,
  apiVersion: 128,
  kind: 64,
  namespace: 63,
  name: 253,
  uid: 64,
  time: 40,
} as const;

export const EVENT_TYPES = ['Normal', 'Warning'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The object an event is about (a Kubernetes event's involvedObject). */
export interface EventObjectRef {
  apiVersion?: string;
  kind: string;
  namespace?: string;
  name: string;
  uid?: string;
}

/**
 * One cluster event as agentk reports it. Repeats of one event (same object, reason and message)
 * are merged by agentk: `count` is how often it happened so far, `firstTime` and `lastTime` the
 * first and latest occurrence; a later record of the same event carries the new totals.
 */
export interface EventRecord {
  type: EventType;
  reason: string;
  message: string;
  object: EventObjectRef;
  count: number;
  /** RFC 3339 times. */
  firstTime: string;
  lastTime: string;
  /** Who reported it in the cluster (a Kubernetes event's source.component or reportingController). */
  reporter?: string;
}

function bad(message: string): TunnelError {
  return new TunnelError('PROTOCOL_ERROR', `invalid cluster event stream: ${message}`);
}

export function encodeAgentEventsHead(): Head {
  return { t: AGENT_EVENTS_STREAM, v: AGENT_EVENTS_VERSION };
}

/** Validates agentk's OPEN head. Throws TunnelError PROTOCOL_ERROR naming what is wrong. */
export function decodeAgentEventsHead(head: Head): void {
  if (head.t !== AGENT_EVENTS_STREAM) throw bad(`stream type must be "${AGENT_EVENTS_STREAM}"`);
  if (head.v !== AGENT_EVENTS_VERSION) throw bad(`v must be ${AGENT_EVENTS_VERSION}`);
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
// As for frames: no msgpackr id/pointer extensions, so a few bytes cannot name a value many times.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, moreTypes: false, structuredClone: false });

/** Cuts a string to `max` UTF-16 code units without splitting a surrogate pair. */
export function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  let cut = s.slice(0, max);
  const last = cut.charCodeAt(cut.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut = cut.slice(0, -1);
  return cut;
}

/** A record with every string cut to its limit (what agentk does before encoding). */
export function fitRecord(r: EventRecord): EventRecord {
  const o = r.object;
  const object: EventObjectRef = { kind: truncate(o.kind, EVENT_LIMITS.kind), name: truncate(o.name, EVENT_LIMITS.name) };
  if (o.apiVersion) object.apiVersion = truncate(o.apiVersion, EVENT_LIMITS.apiVersion);
  if (o.namespace) object.namespace = truncate(o.namespace, EVENT_LIMITS.namespace);
  if (o.uid) object.uid = truncate(o.uid, EVENT_LIMITS.uid);
  const out: EventRecord = {
    type: r.type,
    reason: truncate(r.reason, EVENT_LIMITS.reason),
    message: truncate(r.message, EVENT_LIMITS.message),
    object,
    count: Math.min(Math.max(1, Math.floor(r.count)), 0x7fffffff),
    firstTime: truncate(r.firstTime, EVENT_LIMITS.time),
    lastTime: truncate(r.lastTime, EVENT_LIMITS.time),
  };
  if (r.reporter) out.reporter = truncate(r.reporter, EVENT_LIMITS.reporter);
  return out;
}

/** One record as a msgpack byte string; throws when it is over MAX_EVENT_RECORD_BYTES even after fitRecord. */
export function encodeEventRecord(r: EventRecord): Uint8Array {
  const bytes = packr.pack(fitRecord(r));
  if (bytes.byteLength > MAX_EVENT_RECORD_BYTES) throw bad(`a record is ${bytes.byteLength} bytes; the limit is ${MAX_EVENT_RECORD_BYTES}`);
  return bytes;
}

/** A batch as stream data (length prefix included) from encoded records. */
export function encodeEventBatch(records: readonly Uint8Array[]): Buffer {
  if (records.length === 0 || records.length > MAX_EVENT_BATCH_RECORDS) throw bad(`a batch holds 1 to ${MAX_EVENT_BATCH_RECORDS} records, not ${records.length}`);
  const body = packr.pack(records.map((r) => Buffer.from(r.buffer, r.byteOffset, r.byteLength)));
  if (body.byteLength > MAX_EVENT_BATCH_BYTES) throw bad(`a batch is ${body.byteLength} bytes; the limit is ${MAX_EVENT_BATCH_BYTES}`);
  const out = Buffer.allocUnsafe(EVENT_BATCH_PREFIX_BYTES + body.byteLength);
  out.writeUInt32BE(body.byteLength, 0);
  out.set(body, EVENT_BATCH_PREFIX_BYTES);
  return out;
}

/** An upper bound of a batch body's size for records of these encoded sizes (msgpack array and byte string headers included). */
export function batchBodyBytes(recordSizes: readonly number[]): number {
  return 3 + recordSizes.reduce((sum, n) => sum + n + 3, 0);
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function str(v: unknown, what: string, max: number, optional: boolean): string | undefined {
  if (v === undefined || v === null) {
    if (optional) return undefined;
    throw bad(`${what} is required`);
  }
  if (typeof v !== 'string') throw bad(`${what} must be a string`);
  if (v.length > max) throw bad(`${what} is longer than ${max} characters`);
  if (!optional && v === '') throw bad(`${what} must not be empty`);
  return v === '' ? undefined : v;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

function time(v: unknown, what: string): string {
  const s = str(v, what, EVENT_LIMITS.time, false)!;
  if (!RFC3339.test(s) || Number.isNaN(Date.parse(s))) throw bad(`${what} must be an RFC 3339 time`);
  return s;
}

/** Decodes and checks one record. Unknown keys are ignored (a newer agentk may send more). */
export function decodeEventRecord(bytes: Uint8Array): EventRecord {
  if (bytes.byteLength > MAX_EVENT_RECORD_BYTES) throw bad(`a record is ${bytes.byteLength} bytes; the limit is ${MAX_EVENT_RECORD_BYTES}`);
  let raw: unknown;
  try {
    raw = unpackr.unpack(bytes);
  } catch {
    throw bad('a record is not valid msgpack');
  }
  if (!isMap(raw)) throw bad('a record must be a map');
  const type = raw.type;
  if (!(EVENT_TYPES as readonly unknown[]).includes(type)) throw bad(`type must be one of ${EVENT_TYPES.join(', ')}`);
  const o = raw.object;
  if (!isMap(o)) throw bad('object must be a map');
  const object: EventObjectRef = { kind: str(o.kind, 'object.kind', EVENT_LIMITS.kind, false)!, name: str(o.name, 'object.name', EVENT_LIMITS.name, false)! };
  const apiVersion = str(o.apiVersion, 'object.apiVersion', EVENT_LIMITS.apiVersion, true);
  const namespace = str(o.namespace, 'object.namespace', EVENT_LIMITS.namespace, true);
  const uid = str(o.uid, 'object.uid', EVENT_LIMITS.uid, true);
  if (apiVersion) object.apiVersion = apiVersion;
  if (namespace) object.namespace = namespace;
  if (uid) object.uid = uid;
  const count = raw.count;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 0x7fffffff) throw bad('count must be an integer from 1 to 2147483647');
  const record: EventRecord = {
    type: type as EventType,
    reason: str(raw.reason, 'reason', EVENT_LIMITS.reason, false)!,
    message: str(raw.message, 'message', EVENT_LIMITS.message, true) ?? '',
    object,
    count,
    firstTime: time(raw.firstTime, 'firstTime'),
    lastTime: time(raw.lastTime, 'lastTime'),
  };
  const reporter = str(raw.reporter, 'reporter', EVENT_LIMITS.reporter, true);
  if (reporter) record.reporter = reporter;
  return record;
}

/** Decodes a batch body (after its length prefix) into its records' bytes. */
export function decodeEventBatch(body: Uint8Array): Uint8Array[] {
  if (body.byteLength > MAX_EVENT_BATCH_BYTES) throw bad(`a batch is ${body.byteLength} bytes; the limit is ${MAX_EVENT_BATCH_BYTES}`);
  let raw: unknown;
  try {
    raw = unpackr.unpack(body);
  } catch {
    throw bad('a batch is not valid msgpack');
  }
  if (!Array.isArray(raw)) throw bad('a batch must be an array of records');
  if (raw.length === 0 || raw.length > MAX_EVENT_BATCH_RECORDS) throw bad(`a batch holds 1 to ${MAX_EVENT_BATCH_RECORDS} records, not ${raw.length}`);
  for (const r of raw) {
    if (!(r instanceof Uint8Array)) throw bad('each record of a batch must be a msgpack byte string');
  }
  return raw as Uint8Array[];
}

/**
 * Cuts stream data into batch bodies. Holds at most one batch (prefix plus MAX_EVENT_BATCH_BYTES);
 * a length prefix of 0 or over the cap throws PROTOCOL_ERROR before any of that batch is buffered.
 */
export class EventBatchReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = -1;

  /** Adds received bytes; returns the batch bodies completed by them. */
  push(chunk: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.buffered += chunk.byteLength;
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < EVENT_BATCH_PREFIX_BYTES) break;
        const len = this.take(EVENT_BATCH_PREFIX_BYTES).readUInt32BE(0);
        if (len === 0 || len > MAX_EVENT_BATCH_BYTES) throw bad(`a batch length of ${len} bytes; batches are 1 to ${MAX_EVENT_BATCH_BYTES} bytes`);
        this.need = len;
      }
      if (this.buffered < this.need) break;
      out.push(this.take(this.need));
      this.need = -1;
    }
    return out;
  }

  /** True when the data ended between batches (nothing half received). */
  get atBoundary(): boolean {
    return this.buffered === 0 && this.need < 0;
  }

  /** Bytes held now (for tests: never more than one batch). */
  get heldBytes(): number {
    return this.buffered;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    const head = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.byteLength > 0 ? [rest] : [];
    this.buffered = rest.byteLength;
    return Buffer.from(head);
  }
}
