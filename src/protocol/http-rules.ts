/**
 * The HTTP decisions kas and agentk both make about a proxied request, kept in one place so the two
 * hops cannot disagree: which headers belong to one connection and are never relayed, what makes a
 * request a protocol switch, which headers carry impersonation, and when a client's request has a
 * body. Each side applies these rules to its own header shape (node:http's flat raw list on the
 * client-facing sockets, {@link HeaderPair}s on the wire); what only one side does (kas removing
 * its own credentials and adding Via, agentk adding its credentials and kas's impersonation) stays
 * with that side. Pure: no I/O, no HTTP library.
 */
import type { HeaderPair } from './http.js';

/**
 * Headers that describe one connection, not the message (RFC 9110 section 7.6.1, plus the proxy
 * ones), and Host, which names the connection's target: each hop sets its own.
 */
const PER_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

const IMPERSONATE_PREFIX = 'impersonate-';

/** Returned when a message has no Connection header (the common case): nothing allocated. */
const NO_TOKENS: ReadonlySet<string> = new Set();

/** True for a header (lower-cased name) that belongs to one hop and is never relayed as is. */
export function isPerHopHeader(lowerName: string): boolean {
  return PER_HOP.has(lowerName);
}

/** True for a header (lower-cased name) that asks the API server to act as someone else. */
export function isImpersonationHeader(lowerName: string): boolean {
  return lowerName.startsWith(IMPERSONATE_PREFIX);
}

function addTokens(value: string, into: Set<string>): void {
  for (const t of value.split(',')) {
    const token = t.trim().toLowerCase();
    if (token) into.add(token);
  }
}

/** The lower-cased tokens of every Connection header of wire header pairs. */
export function connectionTokens(headers: readonly HeaderPair[]): ReadonlySet<string> {
  // The length test first: most names are not 10 long, and lower-casing each would allocate.
  let tokens: Set<string> | null = null;
  for (let i = 0; i < headers.length; i++) {
    const [name, value] = headers[i]!;
    if (name.length === 10 && name.toLowerCase() === 'connection') addTokens(value, (tokens ??= new Set()));
  }
  return tokens ?? NO_TOKENS;
}

/** The lower-cased tokens of every Connection header of node:http's flat [name, value, ...] list. */
export function rawConnectionTokens(rawHeaders: readonly string[]): ReadonlySet<string> {
  let tokens: Set<string> | null = null;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 10 && name.toLowerCase() === 'connection') addTokens(rawHeaders[i + 1]!, (tokens ??= new Set()));
  }
  return tokens ?? NO_TOKENS;
}

/**
 * A protocol switch request (kubectl exec, attach, port-forward): Connection names `upgrade` and
 * the Upgrade header names a protocol. `upgrade` is the Upgrade header's value, if any.
 */
export function isUpgradeRequest(connection: ReadonlySet<string>, upgrade: string | undefined): boolean {
  return connection.has('upgrade') && upgrade !== undefined && upgrade.trim() !== '';
}

/**
 * Whether a request header (lower-cased name) goes on to the next hop: not when it belongs to
 * this hop, or the Connection header names it. The Upgrade header of an upgrade request goes on
 * when `keepUpgrade` is set (the caller sends `Connection: Upgrade` of its own with it).
 */
export function forwardsRequestHeader(lowerName: string, connection: ReadonlySet<string>, keepUpgrade: boolean): boolean {
  if (keepUpgrade && lowerName === 'upgrade') return true;
  return !PER_HOP.has(lowerName) && !connection.has(lowerName);
}

/**
 * Whether a response header (lower-cased name) is relayed back: not when it belongs to this hop or
 * the Connection header names it. A 101 keeps Connection and Upgrade, which the client needs to see
 * the switch, and with them whatever its Connection header names: the switch is relayed as made.
 */
export function relaysResponseHeader(lowerName: string, connection: ReadonlySet<string>, switching: boolean): boolean {
  if (switching) return lowerName === 'connection' || lowerName === 'upgrade' || !PER_HOP.has(lowerName);
  return !PER_HOP.has(lowerName) && !connection.has(lowerName);
}

/** True when wire header pairs carry any Impersonate-* header. */
export function hasImpersonationHeaders(headers: readonly HeaderPair[]): boolean {
  for (let i = 0; i < headers.length; i++) if (isImpersonationHeader(headers[i]![0].toLowerCase())) return true;
  return false;
}

/** True when node:http's flat [name, value, ...] list carries any Impersonate-* header. */
export function rawHasImpersonationHeaders(rawHeaders: readonly string[]): boolean {
  // Only names at least as long as the prefix can carry it: the rest are not lower-cased.
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length >= IMPERSONATE_PREFIX.length && isImpersonationHeader(name.toLowerCase())) return true;
  }
  return false;
}

/**
 * Whether a client's request has a body, from its framing headers alone and whatever its method
 * (RFC 9112 section 6.3): a Transfer-Encoding, or a Content-Length other than 0. kas decides this
 * once, at the edge, and says it on the wire: the OPEN of a request without a body ends the
 * stream. agentk reads it from there, never from the method.
 */
export function requestHasBody(transferEncoding: string | undefined, contentLength: string | undefined): boolean {
  return transferEncoding !== undefined || (contentLength !== undefined && contentLength !== '0');
}

/**
 * The first value of a header in Node's raw header list ([name, value, name, value, ...]);
 * `lowerName` in lower case. Names of another length are skipped without lower-casing them.
 */
export function rawHeaderValue(rawHeaders: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) return rawHeaders[i + 1];
  }
  return undefined;
}

/** The first value of a header in wire header pairs, case-insensitively. */
export function headerValue(headers: readonly HeaderPair[], name: string): string | undefined {
  const l = name.toLowerCase();
  for (let i = 0; i < headers.length; i++) if (headers[i]![0].toLowerCase() === l) return headers[i]![1];
  return undefined;
}
