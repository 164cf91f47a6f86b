/**
 * Header rules of the Kubernetes API proxy on the agent side: what of the client's headers goes to
 * the API server, how kas's impersonation decision becomes Impersonate-* headers, and what of the
 * API server's response goes back. The rules kas applies too (hop-by-hop headers, upgrades,
 * impersonation headers) come from src/protocol/http-rules.ts. Pure functions;
 * api-server-forwarder.ts applies them.
 */
import type { HeaderPair, Impersonation } from '../../protocol/http.js';
import { connectionTokens, forwardsRequestHeader, isImpersonationHeader, rawConnectionTokens, relaysResponseHeader } from '../../protocol/http-rules.js';

/** Bytes allowed unescaped in a header name (RFC 9110 tchar), as client-go's headerKeyEscape has it. */
const TCHAR = /^[!#$&'*+\-.^_`|~0-9A-Za-z]$/;

/**
 * Percent-encodes an extra key for `Impersonate-Extra-<key>` the way Kubernetes expects: every
 * byte of its UTF-8 form that is not an HTTP token character, and '%' itself, becomes %XX.
 */
export function escapeExtraKey(key: string): string {
  let out = '';
  for (const byte of Buffer.from(key, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && TCHAR.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The Impersonate-* headers that carry kas's decision: one Group per group, one Extra per value. */
export function impersonationHeaders(imp: Impersonation): HeaderPair[] {
  const headers: HeaderPair[] = [['Impersonate-User', imp.username]];
  if (imp.uid !== undefined && imp.uid !== '') headers.push(['Impersonate-Uid', imp.uid]);
  for (const group of imp.groups ?? []) headers.push(['Impersonate-Group', group]);
  for (const [key, values] of Object.entries(imp.extra ?? {})) {
    const name = `Impersonate-Extra-${escapeExtraKey(key)}`;
    for (const value of values) headers.push([name, value]);
  }
  return headers;
}

/**
 * The client's headers as they go to the API server: without hop-by-hop headers (and those the
 * Connection header names), Host and Authorization (the agent sends its own); for an upgrade,
 * with `Connection: Upgrade` and the client's Upgrade header; then kas's impersonation, if any.
 * The caller has already refused a request that carries Impersonate-* headers of its own together
 * with kas's impersonation. `named` is the Connection tokens of `headers` when the caller has them.
 */
export function upstreamRequestHeaders(
  headers: readonly HeaderPair[],
  impersonate: Impersonation | null,
  upgrade: boolean,
  named: ReadonlySet<string> = connectionTokens(headers),
): HeaderPair[] {
  const out: HeaderPair[] = [];
  for (const pair of headers) {
    const l = pair[0].toLowerCase();
    if (l === 'authorization' || !forwardsRequestHeader(l, named, upgrade)) continue;
    if (impersonate && isImpersonationHeader(l)) continue;
    out.push(pair);
  }
  if (upgrade) out.push(['Connection', 'Upgrade']);
  if (impersonate) out.push(...impersonationHeaders(impersonate));
  return out;
}

/**
 * The API server's response headers as they go back through the tunnel: raw pairs in order
 * (repeated names stay separate), without hop-by-hop headers, except that a 101 keeps its
 * Connection and Upgrade headers, which the client needs to see the switch.
 */
export function responseHeaders(rawHeaders: readonly string[], switching: boolean): HeaderPair[] {
  const named = rawConnectionTokens(rawHeaders);
  const pairs: HeaderPair[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (relaysResponseHeader(name.toLowerCase(), named, switching)) pairs.push([name, rawHeaders[i + 1]!]);
  }
  return pairs;
}

/** Flattens pairs into the [name, value, name, value, ...] form node:http takes (repeats preserved). */
export function flatten(headers: readonly HeaderPair[]): string[] {
  const flat: string[] = [];
  for (const [name, value] of headers) flat.push(name, value);
  return flat;
}

