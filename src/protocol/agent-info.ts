/**
 * Agent registration on the wire: agentk opens an `agent_info` stream towards kas on every session
 * (and again every few minutes) whose data is one JSON object saying who it is (version, pod, CPU
 * architecture, the cluster's Kubernetes version, extra telemetry); kas checks it, keeps it for that
 * connection and answers with a REPLY head `{registered: true}`. docs/protocol.md ("Agent
 * registration streams") is the normative description. Everything here is checked as hostile
 * input: kas resets a stream whose data breaks any rule below with PROTOCOL_ERROR and keeps nothing.
 */
import { TunnelError } from './errors.js';
import type { Head } from './frames.js';

/** Stream type tag of registration streams (`t` in the OPEN head). */
export const AGENT_INFO_STREAM = 'agent_info';

/** Largest document (JSON bytes) kas accepts. */
export const MAX_AGENT_INFO_BYTES = 16 * 1024;
/** Most extra telemetry entries. */
export const MAX_TELEMETRY_ENTRIES = 20;
/** Longest telemetry key. */
export const MAX_TELEMETRY_KEY_LENGTH = 64;
/** Longest telemetry value. */
export const MAX_TELEMETRY_VALUE_LENGTH = 256;
/** What a telemetry key is made of (environment variable names lowercased, after the prefix). */
export const TELEMETRY_KEY = /^[a-z0-9_]{1,64}$/;

/** The longest value of each string field (characters). */
export const AGENT_INFO_FIELD_LIMITS = {
  version: 256,
  commit: 256,
  pod_namespace: 253,
  pod_name: 253,
  pod_uid: 128,
  architecture: 32,
  kubernetes_version: 256,
} as const;

export type AgentInfoStringField = keyof typeof AGENT_INFO_FIELD_LIMITS;

/** What agentk says about itself. Strings are '' when unknown (outside a cluster, no /version). */
export interface AgentInfo {
  version: string;
  commit: string;
  pod_namespace: string;
  pod_name: string;
  pod_uid: string;
  /** Go's name of the CPU architecture (`amd64`, `arm64`, ...). */
  architecture: string;
  /** The API server's gitVersion, e.g. `v1.20.2`. */
  kubernetes_version: string;
  /** At most 20 entries; keys match TELEMETRY_KEY, values at most 256 characters. */
  extra_telemetry: Record<string, string>;
}

/** kas's answer. */
export interface AgentInfoReply {
  registered: boolean;
}

/** C0 controls and DEL: no field of a registration has a reason to carry them. */
export function hasControlCharacters(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}
const ARCHITECTURE = /^[a-z0-9_]*$/;

function bad(message: string): TunnelError {
  return new TunnelError('PROTOCOL_ERROR', `invalid agent_info: ${message}`);
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function encodeAgentInfoHead(): Head {
  return { t: AGENT_INFO_STREAM };
}

/** Checks agentk's OPEN head. Throws TunnelError PROTOCOL_ERROR. */
export function decodeAgentInfoHead(head: Head): void {
  if (head.t !== AGENT_INFO_STREAM) throw bad(`stream type must be "${AGENT_INFO_STREAM}"`);
}

/** The stream data agentk sends: the document as UTF-8 JSON (checked like kas checks it). */
export function encodeAgentInfo(info: AgentInfo): Uint8Array {
  const checked = checkAgentInfo(info);
  const bytes = new TextEncoder().encode(JSON.stringify(checked));
  if (bytes.byteLength > MAX_AGENT_INFO_BYTES) throw bad(`the document is ${bytes.byteLength} bytes; the limit is ${MAX_AGENT_INFO_BYTES}`);
  return bytes;
}

/**
 * Decodes and checks the stream data: a UTF-8 JSON object of at most MAX_AGENT_INFO_BYTES whose
 * fields follow the rules of AgentInfo. Unknown keys are ignored (a newer agentk may say more).
 * Throws TunnelError PROTOCOL_ERROR naming what is wrong.
 */
export function decodeAgentInfo(data: Uint8Array): AgentInfo {
  if (data.byteLength > MAX_AGENT_INFO_BYTES) throw bad(`the document is ${data.byteLength} bytes; the limit is ${MAX_AGENT_INFO_BYTES}`);
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch {
    throw bad('the data must be a UTF-8 JSON document');
  }
  return checkAgentInfo(doc);
}

/** Checks a parsed document and returns exactly the known fields. */
export function checkAgentInfo(doc: unknown): AgentInfo {
  if (!isMap(doc)) throw bad('the document must be a JSON object');
  const text = (field: AgentInfoStringField, required = false): string => {
    const v = doc[field];
    if (v === undefined && !required) return '';
    if (typeof v !== 'string') throw bad(`${field} must be a string`);
    const max = AGENT_INFO_FIELD_LIMITS[field];
    if (v.length > max) throw bad(`${field} is longer than ${max} characters`);
    if (hasControlCharacters(v)) throw bad(`${field} holds control characters`);
    return v;
  };
  const version = text('version', true);
  if (version === '') throw bad('version must not be empty');
  const architecture = text('architecture');
  if (!ARCHITECTURE.test(architecture)) throw bad('architecture must be made of a-z, 0-9 and _');
  return {
    version,
    commit: text('commit'),
    pod_namespace: text('pod_namespace'),
    pod_name: text('pod_name'),
    pod_uid: text('pod_uid'),
    architecture,
    kubernetes_version: text('kubernetes_version'),
    extra_telemetry: checkTelemetry(doc.extra_telemetry),
  };
}

function checkTelemetry(v: unknown): Record<string, string> {
  if (v === undefined) return {};
  if (!isMap(v)) throw bad('extra_telemetry must be an object');
  const entries = Object.entries(v);
  if (entries.length > MAX_TELEMETRY_ENTRIES) throw bad(`extra_telemetry has ${entries.length} entries; the limit is ${MAX_TELEMETRY_ENTRIES}`);
  // A null-prototype object: a key like "__proto__" is data, never the prototype.
  const out = Object.create(null) as Record<string, string>;
  for (const [key, value] of entries) {
    if (!TELEMETRY_KEY.test(key)) throw bad(`extra_telemetry key ${JSON.stringify(key.slice(0, MAX_TELEMETRY_KEY_LENGTH + 1))} must be 1 to ${MAX_TELEMETRY_KEY_LENGTH} characters of a-z, 0-9 and _`);
    if (typeof value !== 'string') throw bad(`extra_telemetry.${key} must be a string`);
    if (value.length > MAX_TELEMETRY_VALUE_LENGTH) throw bad(`extra_telemetry.${key} is longer than ${MAX_TELEMETRY_VALUE_LENGTH} characters`);
    if (hasControlCharacters(value)) throw bad(`extra_telemetry.${key} holds control characters`);
    out[key] = value;
  }
  return { ...out };
}

export function encodeAgentInfoReply(r: AgentInfoReply): Head {
  return { registered: r.registered };
}

/** Checks kas's REPLY head (agentk only logs it). Throws TunnelError PROTOCOL_ERROR. */
export function decodeAgentInfoReply(head: Head): AgentInfoReply {
  if (typeof head.registered !== 'boolean') throw bad('the reply needs a boolean registered');
  return { registered: head.registered };
}
