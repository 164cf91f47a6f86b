import type { HeaderPair } from './http.js';
import {
  connectionTokens,
  forwardsRequestHeader,
  hasImpersonationHeaders,
  headerValue,
  isImpersonationHeader,
  isPerHopHeader,
  isUpgradeRequest,
  rawConnectionTokens,
  rawHasImpersonationHeaders,
  relaysResponseHeader,
  requestHasBody,
} from './http-rules.js';

describe('the HTTP rules kas and agentk share', () => {
  test.each(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host'])(
    '%s belongs to one hop',
    (name) => {
      expect(isPerHopHeader(name)).toBe(true);
    },
  );

  test.each(['accept', 'content-type', 'content-length', 'authorization', 'via', 'impersonate-user'])('%s is not a per-hop header', (name) => {
    expect(isPerHopHeader(name)).toBe(false);
  });

  test('Connection tokens are collected from every Connection header, lower-cased and trimmed, in both header shapes', () => {
    const pairs: HeaderPair[] = [['Connection', 'keep-alive, X-Hop'], ['Accept', 'a'], ['connection', ' Upgrade ,,']];
    expect([...connectionTokens(pairs)].sort()).toEqual(['keep-alive', 'upgrade', 'x-hop']);
    expect([...rawConnectionTokens(pairs.flat())].sort()).toEqual(['keep-alive', 'upgrade', 'x-hop']);
    expect(connectionTokens([['Accept', 'a']]).size).toBe(0);
    expect(rawConnectionTokens([]).size).toBe(0);
  });

  test('an upgrade needs Connection naming upgrade and an Upgrade header naming a protocol', () => {
    expect(isUpgradeRequest(rawConnectionTokens(['Connection', 'Upgrade']), 'SPDY/3.1')).toBe(true);
    expect(isUpgradeRequest(rawConnectionTokens(['Connection', 'keep-alive, upgrade']), 'websocket')).toBe(true);
    expect(isUpgradeRequest(rawConnectionTokens(['Connection', 'keep-alive']), 'websocket')).toBe(false);
    expect(isUpgradeRequest(rawConnectionTokens(['Connection', 'Upgrade']), undefined)).toBe(false);
    expect(isUpgradeRequest(rawConnectionTokens(['Connection', 'Upgrade']), '  ')).toBe(false);
    expect(isUpgradeRequest(rawConnectionTokens([]), 'websocket')).toBe(false);
  });

  test('a request header goes on unless it is per-hop or named by Connection; an upgrade may keep its Upgrade header', () => {
    const named = connectionTokens([['Connection', 'X-Hop']]);
    expect(forwardsRequestHeader('accept', named, false)).toBe(true);
    expect(forwardsRequestHeader('x-hop', named, false)).toBe(false);
    expect(forwardsRequestHeader('keep-alive', named, false)).toBe(false);
    expect(forwardsRequestHeader('host', named, false)).toBe(false);
    expect(forwardsRequestHeader('upgrade', named, false)).toBe(false);
    expect(forwardsRequestHeader('upgrade', named, true)).toBe(true);
    expect(forwardsRequestHeader('connection', named, true)).toBe(false);
  });

  test('a response header is relayed unless per-hop or named by Connection; a 101 keeps Connection and Upgrade', () => {
    const named = connectionTokens([['Connection', 'close, X-Hop']]);
    expect(relaysResponseHeader('content-type', named, false)).toBe(true);
    expect(relaysResponseHeader('x-hop', named, false)).toBe(false);
    expect(relaysResponseHeader('transfer-encoding', named, false)).toBe(false);
    expect(relaysResponseHeader('connection', named, false)).toBe(false);
    expect(relaysResponseHeader('connection', named, true)).toBe(true);
    expect(relaysResponseHeader('upgrade', named, true)).toBe(true);
    expect(relaysResponseHeader('transfer-encoding', named, true)).toBe(false);
  });

  test('Impersonate-* headers are found in any case, in both header shapes', () => {
    expect(isImpersonationHeader('impersonate-extra-scopes')).toBe(true);
    expect(isImpersonationHeader('x-impersonate-user')).toBe(false);
    expect(hasImpersonationHeaders([['Accept', 'x'], ['Impersonate-Group', 'g']])).toBe(true);
    expect(hasImpersonationHeaders([['Accept', 'x']])).toBe(false);
    expect(rawHasImpersonationHeaders(['IMPERSONATE-USER', 'u'])).toBe(true);
    expect(rawHasImpersonationHeaders(['Accept', 'impersonate-user'])).toBe(false);
    // Both shapes agree on the bare prefix and on names just shorter than it.
    for (const name of ['Impersonate-', 'Impersonate', 'X-Impersonate-User']) {
      expect(rawHasImpersonationHeaders(['Accept', 'x', name, 'v'])).toBe(hasImpersonationHeaders([['Accept', 'x'], [name, 'v']]));
    }
    expect(rawHasImpersonationHeaders(['Impersonate-', 'v'])).toBe(true);
  });

  test('a request has a body when its framing says so, whatever its method', () => {
    expect(requestHasBody('chunked', undefined)).toBe(true);
    expect(requestHasBody(undefined, '5')).toBe(true);
    expect(requestHasBody(undefined, '0')).toBe(false);
    expect(requestHasBody(undefined, undefined)).toBe(false);
  });

  test('headerValue finds the first value case-insensitively', () => {
    expect(headerValue([['upgrade', 'a'], ['Upgrade', 'b']], 'UPGRADE')).toBe('a');
    expect(headerValue([['Accept', 'x']], 'upgrade')).toBeUndefined();
  });
});
