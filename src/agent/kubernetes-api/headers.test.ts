import type { HeaderPair } from '../../protocol/http.js';
import { connectionTokens, headerValue, isUpgradeRequest as isUpgrade } from '../../protocol/http-rules.js';
import { escapeExtraKey, impersonationHeaders, responseHeaders, upstreamRequestHeaders } from './headers.js';

/** The shared upgrade rule, applied to wire header pairs as agentk applies it. */
const isUpgradeRequest = (headers: readonly HeaderPair[]) => isUpgrade(connectionTokens(headers), headerValue(headers, 'upgrade'));

describe('escapeExtraKey (Impersonate-Extra-<key>, as client-go escapes it)', () => {
  test.each([
    ['scopes', 'scopes'],
    ['example.com/team', 'example.com%2Fteam'],
    ['50%', '50%25'],
    ['a b', 'a%20b'],
    ['ünï', '%C3%BCn%C3%AF'],
    ['x:y=z', 'x%3Ay%3Dz'],
  ])('%s -> %s', (key, escaped) => {
    expect(escapeExtraKey(key)).toBe(escaped);
  });
});

describe('impersonationHeaders', () => {
  test('one header per group and per extra value, in order', () => {
    expect(impersonationHeaders({ username: 'jane', uid: '42', groups: ['dev', 'ops'], extra: { 'example.com/scope': ['a', 'b'], team: ['x'] } })).toEqual([
      ['Impersonate-User', 'jane'],
      ['Impersonate-Uid', '42'],
      ['Impersonate-Group', 'dev'],
      ['Impersonate-Group', 'ops'],
      ['Impersonate-Extra-example.com%2Fscope', 'a'],
      ['Impersonate-Extra-example.com%2Fscope', 'b'],
      ['Impersonate-Extra-team', 'x'],
    ]);
  });
});

describe('upstreamRequestHeaders', () => {
  const client: HeaderPair[] = [
    ['Host', 'kas.example.com'],
    ['Authorization', 'Bearer client-secret'],
    ['Accept', 'application/json'],
    ['Connection', 'keep-alive, X-Hop'],
    ['X-Hop', 'per-connection'],
    ['Keep-Alive', 'timeout=5'],
    ['Transfer-Encoding', 'chunked'],
    ['TE', 'trailers'],
    ['Proxy-Authorization', 'Basic eA=='],
    ['X-Custom', 'one'],
    ['x-custom', 'two'],
  ];

  test('drops credentials, Host and hop-by-hop headers (also those Connection names); keeps repeats', () => {
    expect(upstreamRequestHeaders(client, null, false)).toEqual([
      ['Accept', 'application/json'],
      ['X-Custom', 'one'],
      ['x-custom', 'two'],
    ]);
  });

  test('an upgrade keeps the Upgrade header and says Connection: Upgrade', () => {
    const headers: HeaderPair[] = [['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Protocol', 'v5.channel.k8s.io']];
    expect(isUpgradeRequest(headers)).toBe(true);
    expect(upstreamRequestHeaders(headers, null, true)).toEqual([['Upgrade', 'websocket'], ['Sec-WebSocket-Protocol', 'v5.channel.k8s.io'], ['Connection', 'Upgrade']]);
    expect(isUpgradeRequest([['Upgrade', 'websocket']])).toBe(false);
    expect(isUpgradeRequest([['Connection', 'keep-alive, Upgrade'], ['upgrade', 'SPDY/3.1']])).toBe(true);
  });

  test('without kas impersonation the client Impersonate-* headers pass; with it, kas decides', () => {
    const headers: HeaderPair[] = [['Impersonate-User', 'someone']];
    expect(upstreamRequestHeaders(headers, null, false)).toEqual([['Impersonate-User', 'someone']]);
    expect(upstreamRequestHeaders(headers, { username: 'jane' }, false)).toEqual([['Impersonate-User', 'jane']]);
  });
});

describe('responseHeaders', () => {
  test('keeps repeated headers as separate pairs and drops hop-by-hop ones', () => {
    const raw = ['Content-Type', 'application/json', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Connection', 'keep-alive', 'Transfer-Encoding', 'chunked', 'Keep-Alive', 'timeout=5'];
    expect(responseHeaders(raw, false)).toEqual([['Content-Type', 'application/json'], ['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2']]);
  });

  test('a 101 keeps Connection and Upgrade', () => {
    expect(responseHeaders(['Connection', 'Upgrade', 'Upgrade', 'SPDY/3.1', 'X-Stream-Protocol-Version', 'v4.channel.k8s.io'], true)).toEqual([
      ['Connection', 'Upgrade'],
      ['Upgrade', 'SPDY/3.1'],
      ['X-Stream-Protocol-Version', 'v4.channel.k8s.io'],
    ]);
  });
});
