/**
 * Turning a client's HTTP request into the head kas sends down the tunnel: strip the URL prefix and
 * kas's own credentials, drop hop-by-hop headers (keeping the upgrade pair for upgrades), add Via.
 * Which headers are hop-by-hop, what an upgrade is and which response headers go back are the
 * rules both hops share (src/protocol/http-rules.ts); only what is kas's own is here.
 */
import type { HeaderPair } from '../../protocol/http.js';
import { connectionTokens, forwardsRequestHeader, rawConnectionTokens, rawHeaderValue, relaysResponseHeader } from '../../protocol/http-rules.js';

/** Headers that carry credentials for kas itself; never forwarded to the cluster. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie', 'gitlab-agent-id', 'x-csrf-token', 'proxy-authorization']);
/** Query parameters that carry credentials for kas itself. */
export const CREDENTIAL_QUERY_PARAMS = ['gitlab-agent-id', 'gitlab-csrf-token'];
export const VIA = '1.1 gitlab-agent-kas';

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

/**
 * The client's headers minus credentials and hop-by-hop headers, plus Via. An upgrade's
 * `Connection: Upgrade` and Upgrade header are sent last, as the one pair kas vouches for.
 */
export function forwardHeaders(rawHeaders: readonly string[], upgrade: boolean): HeaderPair[] {
  const named = rawConnectionTokens(rawHeaders);
  // With Transfer-Encoding, Content-Length is void (RFC 9112 6.3) and Node framed the body by the
  // former; forwarding the latter would let the next hop frame the same bytes differently.
  const chunked = rawHeaderValue(rawHeaders, 'transfer-encoding') !== undefined;
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
    if (!forwardsRequestHeader(lower, named, false)) continue;
    out.push([name, value]);
  }
  if (upgrade) {
    out.push(['Connection', 'Upgrade']);
    out.push(['Upgrade', rawHeaderValue(rawHeaders, 'upgrade')!]);
  }
  out.push(['Via', via ? `${via}, ${VIA}` : VIA]);
  return out;
}

/** Response headers to relay to the client: hop-by-hop ones dropped (Node frames the body itself). */
export function responseHeaders(headers: readonly HeaderPair[], upgraded: boolean): HeaderPair[] {
  const named = connectionTokens(headers);
  return headers.filter(([name]) => relaysResponseHeader(name.toLowerCase(), named, upgraded));
}
