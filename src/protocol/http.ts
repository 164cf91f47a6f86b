/**
 * The Kubernetes API proxy feature on the wire: kas opens a stream whose OPEN head is an HTTP
 * request head; agentk replies with the response head (REPLY) and both bodies flow as stream data.
 * After a 101 reply to an upgrade request, the stream carries raw bytes both ways.
 * docs/protocol.md ("Kubernetes API proxy streams") is the normative description.
 */
import { TunnelError } from './errors.js';
import type { Head, WireValue } from './frames.js';

/** Stream type tag of HTTP request streams (`t` in the OPEN head). */
export const HTTP_STREAM = 'http';

/** One header line; names keep the case the client sent, repeated names stay separate lines. */
export type HeaderPair = [name: string, value: string];

/** Who the request acts as in the cluster, as kas decided. Absent: the agent's own identity. */
export interface Impersonation {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface HttpRequestHead {
  method: string;
  /** Path and query, always starting with "/": agentk resolves it against its API server only. */
  path: string;
  headers: HeaderPair[];
  impersonate: Impersonation | null;
}

export interface HttpResponseHead {
  status: number;
  headers: HeaderPair[];
}

/** Largest number of header lines in one head. */
export const MAX_HEADER_LINES = 500;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Header values: visible ASCII, space, tab, and obs-text; never CR, LF or NUL.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

function bad(message: string): TunnelError {
  return new TunnelError('PROTOCOL_ERROR', `invalid HTTP head: ${message}`);
}

function headerPairs(v: WireValue | undefined): HeaderPair[] {
  if (!Array.isArray(v) || v.length > MAX_HEADER_LINES) throw bad(`headers must be an array of at most ${MAX_HEADER_LINES} [name, value] pairs`);
  return v.map((pair) => {
    if (!Array.isArray(pair) || pair.length !== 2) throw bad('each header must be a [name, value] pair');
    const [name, value] = pair;
    if (typeof name !== 'string' || !TOKEN.test(name)) throw bad('header name must be an HTTP token');
    if (typeof value !== 'string' || !FIELD_VALUE.test(value)) throw bad(`header ${name} has a value with forbidden characters`);
    return [name, value];
  });
}

function stringList(v: WireValue | undefined, what: string): string[] {
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw bad(`${what} must be a list of strings`);
  return v as string[];
}

function impersonation(v: WireValue | undefined): Impersonation | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw bad('impersonate must be a map');
  const username = v.username;
  if (typeof username !== 'string' || username === '') throw bad('impersonate.username must be a non-empty string');
  const result: Impersonation = { username };
  if (v.uid !== undefined) {
    if (typeof v.uid !== 'string') throw bad('impersonate.uid must be a string');
    result.uid = v.uid;
  }
  if (v.groups !== undefined) result.groups = stringList(v.groups, 'impersonate.groups');
  if (v.extra !== undefined) {
    const extra = v.extra;
    if (typeof extra !== 'object' || extra === null || Array.isArray(extra) || extra instanceof Uint8Array) throw bad('impersonate.extra must be a map');
    result.extra = {};
    for (const [k, list] of Object.entries(extra)) result.extra[k] = stringList(list, `impersonate.extra.${k}`);
  }
  return result;
}

export function encodeRequestHead(h: HttpRequestHead): Head {
  const head: Head = { t: HTTP_STREAM, method: h.method, path: h.path, headers: h.headers };
  if (h.impersonate) {
    const imp: Head = { username: h.impersonate.username };
    if (h.impersonate.uid !== undefined) imp.uid = h.impersonate.uid;
    if (h.impersonate.groups) imp.groups = h.impersonate.groups;
    if (h.impersonate.extra) imp.extra = h.impersonate.extra;
    head.impersonate = imp;
  }
  return head;
}

/** Validates a peer's request head. Throws TunnelError PROTOCOL_ERROR naming what is wrong. */
export function decodeRequestHead(head: Head): HttpRequestHead {
  if (head.t !== HTTP_STREAM) throw bad(`stream type must be "${HTTP_STREAM}"`);
  const { method, path } = head;
  if (typeof method !== 'string' || !TOKEN.test(method) || method.length > 32) throw bad('method must be an HTTP token');
  if (typeof path !== 'string' || !path.startsWith('/') || path.startsWith('//') || path.length > 16 * 1024 || !/^[\x21-\x7e]+$/.test(path)) {
    throw bad('path must be an origin-form path starting with a single "/" without spaces or control characters');
  }
  return { method, path, headers: headerPairs(head.headers), impersonate: impersonation(head.impersonate) };
}

export function encodeResponseHead(h: HttpResponseHead): Head {
  return { status: h.status, headers: h.headers };
}

export function decodeResponseHead(head: Head): HttpResponseHead {
  const { status } = head;
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) throw bad('status must be an integer from 100 to 599');
  return { status, headers: headerPairs(head.headers) };
}
