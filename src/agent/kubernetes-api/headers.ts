/**
 * Header rules of the Kubernetes API proxy on the agent side: what of the client's headers goes to
 * the API server, how kas's impersonation decision becomes Impersonate-* headers, and what of the
 * API server's response goes back. Pure functions; http-proxy.ts applies them.
 */
import type { HeaderPair, Impersonation } from '../../protocol/http.js';

/** Headers that describe one connection, not the message (RFC 9110 section 7.6.1, plus the proxy ones). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Client headers that never reach the API server: the agent sends its own credentials and Host. */
const NEVER_FORWARDED = new Set(['authorization', 'host']);

const IMPERSONATE_PREFIX = 'impersonate-';

/** Bytes allowed unescaped in a header name (RFC 9110 tchar), as client-go's headerKeyEscape has it. */
const TCHAR = /^[!#$&'*+\-.^_`|~0-9A-Za-z]$/;

function lower(name: string): string {
  return name.toLowerCase();
}

/** The lower-cased tokens of every Connection header. */
export function connectionTokens(headers: readonly HeaderPair[]): Set<string> {
  const tokens = new Set<string>();
  for (const [name, value] of headers) {
    if (lower(name) !== 'connection') continue;
    for (const t of value.split(',')) {
      const token = t.trim().toLowerCase();
      if (token) tokens.add(token);
    }
  }
  return tokens;
}

/** A protocol switch request: `Connection: Upgrade` plus an Upgrade header (kubectl exec, attach, port-forward). */
export function isUpgradeRequest(headers: readonly HeaderPair[]): boolean {
  return connectionTokens(headers).has('upgrade') && headers.some(([name, value]) => lower(name) === 'upgrade' && value.trim() !== '');
}

export function hasImpersonationHeaders(headers: readonly HeaderPair[]): boolean {
  return headers.some(([name]) => lower(name).startsWith(IMPERSONATE_PREFIX));
}

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
 * Connection header names), Host and Authorization; for an upgrade, with `Connection: Upgrade` and
 * the client's Upgrade header; then kas's impersonation, if any. The caller has already refused a
 * request that carries Impersonate-* headers of its own together with kas's impersonation.
 */
export function upstreamRequestHeaders(headers: readonly HeaderPair[], impersonate: Impersonation | null, upgrade: boolean): HeaderPair[] {
  const named = connectionTokens(headers);
  const out: HeaderPair[] = [];
  for (const [name, value] of headers) {
    const l = lower(name);
    if (NEVER_FORWARDED.has(l)) continue;
    if (upgrade && l === 'upgrade') {
      out.push([name, value]);
      continue;
    }
    if (HOP_BY_HOP.has(l) || named.has(l)) continue;
    if (impersonate && l.startsWith(IMPERSONATE_PREFIX)) continue;
    out.push([name, value]);
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
  const pairs: HeaderPair[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) pairs.push([rawHeaders[i]!, rawHeaders[i + 1]!]);
  const named = switching ? new Set<string>() : connectionTokens(pairs);
  return pairs.filter(([name]) => {
    const l = lower(name);
    if (switching && (l === 'connection' || l === 'upgrade')) return true;
    return !HOP_BY_HOP.has(l) && !named.has(l);
  });
}

/** Flattens pairs into the [name, value, name, value, ...] form node:http takes (repeats preserved). */
export function flatten(headers: readonly HeaderPair[]): string[] {
  const flat: string[] = [];
  for (const [name, value] of headers) flat.push(name, value);
  return flat;
}

export function headerValue(headers: readonly HeaderPair[], name: string): string | undefined {
  const l = lower(name);
  return headers.find(([n]) => lower(n) === l)?.[1];
}
