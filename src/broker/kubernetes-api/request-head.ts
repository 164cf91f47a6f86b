/**
 * Turning a client's HTTP request into the head kas sends down the tunnel: strip the URL prefix and
 * kas's own credentials, drop hop-by-hop headers (keeping the upgrade pair for upgrades), add Via.
 */
import type { HeaderPair } from '../../protocol/http.js';

/** Headers that carry credentials for kas itself; never forwarded to the cluster. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie', 'gitlab-agent-id', 'x-csrf-token', 'proxy-authorization']);
/** Query parameters that carry credentials for kas itself. */
export const CREDENTIAL_QUERY_PARAMS = ['gitlab-agent-id', 'gitlab-csrf-token'];
/** Hop-by-hop headers (RFC 9110 7.6.1) plus Host, which agentk sets for its API server. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

export const VIA = '1.1 gitlab-agent-kas';

/** True when a request asks to switch protocols (kubectl exec, attach, port-forward). */
export function isUpgradeRequest(headers: { connection?: string | undefined; upgrade?: string | undefined }): boolean {
  const conn = headers.connection?.toLowerCase() ?? '';
  return headers.upgrade !== undefined && conn.split(',').some((t) => t.trim() === 'upgrade');
}

/**
 * The path and query to forward, or null when the URL is not under the prefix or not origin-form.
 * Credential query parameters are removed.
 */
export function forwardPath(url: string | undefined, prefix: string): string | null {
  if (!url || !url.startsWith('/')) return null;
  const base = prefix.endsWith('/') ? prefix : `${prefix}/`;
  let rest: string;
  if (base === '/') rest = url;
  else if (url === prefix || url.startsWith(`${prefix}?`)) rest = `/${url.slice(prefix.length)}`;
  else if (url.startsWith(base)) rest = url.slice(base.length - 1);
  else return null;
  if (rest.startsWith('//')) return null;
  const q = rest.indexOf('?');
  if (q < 0) return rest;
  const params = new URLSearchParams(rest.slice(q + 1));
  let changed = false;
  for (const p of CREDENTIAL_QUERY_PARAMS) {
    if (params.has(p)) {
      params.delete(p);
      changed = true;
    }
  }
  if (!changed) return rest;
  const query = params.toString();
  return query ? `${rest.slice(0, q)}?${query}` : rest.slice(0, q);
}

/** The client's headers minus credentials and hop-by-hop headers, plus Via. */
export function forwardHeaders(rawHeaders: readonly string[], upgrade: boolean): HeaderPair[] {
  const connectionTokens = new Set<string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'connection') {
      for (const t of rawHeaders[i + 1]!.split(',')) connectionTokens.add(t.trim().toLowerCase());
    }
  }
  // With Transfer-Encoding, Content-Length is void (RFC 9112 6.3) and Node framed the body by the
  // former; forwarding the latter would let the next hop frame the same bytes differently.
  const chunked = rawHeaders.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'transfer-encoding');
  const out: HeaderPair[] = [];
  let via: string | null = null;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    const value = rawHeaders[i + 1]!;
    if (CREDENTIAL_HEADERS.has(lower)) continue;
    if (chunked && lower === 'content-length') continue;
    if (lower === 'via') {
      via = via ? `${via}, ${value}` : value;
      continue;
    }
    if (HOP_BY_HOP.has(lower) || (connectionTokens.has(lower) && lower !== 'upgrade')) continue;
    out.push([name, value]);
  }
  if (upgrade) {
    out.push(['Connection', 'Upgrade']);
    const up = rawHeaders.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === 'upgrade');
    out.push(['Upgrade', rawHeaders[up + 1]!]);
  }
  out.push(['Via', via ? `${via}, ${VIA}` : VIA]);
  return out;
}

/** True when the client sent any Impersonate-* header of its own. */
export function hasImpersonationHeaders(rawHeaders: readonly string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase().startsWith('impersonate-')) return true;
  return false;
}

/** Response headers to relay to the client: hop-by-hop ones dropped (Node frames the body itself). */
export function responseHeaders(headers: readonly HeaderPair[], upgraded: boolean): HeaderPair[] {
  return headers.filter(([name]) => {
    const lower = name.toLowerCase();
    if (upgraded && (lower === 'connection' || lower === 'upgrade')) return true;
    return !HOP_BY_HOP.has(lower);
  });
}
