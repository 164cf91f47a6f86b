import { isUpgradeRequest, rawConnectionTokens, rawHasImpersonationHeaders } from '../../protocol/http-rules.js';
import { forwardHeaders, forwardPath, responseHeaders, VIA } from './request-head.js';

describe('what kas forwards of a request', () => {
  test('paths under the prefix lose the prefix; others are refused', () => {
    expect(forwardPath('/api/v1/pods?watch=1', '/')).toBe('/api/v1/pods?watch=1');
    expect(forwardPath('/k8s-proxy/api/v1', '/k8s-proxy')).toBe('/api/v1');
    expect(forwardPath('/k8s-proxy/api/v1', '/k8s-proxy/')).toBe('/api/v1');
    expect(forwardPath('/k8s-proxy', '/k8s-proxy')).toBe('/');
    expect(forwardPath('/k8s-proxy?x=1', '/k8s-proxy')).toBe('/?x=1');
    expect(forwardPath('/k8s-proxyX/api', '/k8s-proxy')).toBeNull();
    expect(forwardPath('/other', '/k8s-proxy')).toBeNull();
  });

  test('absolute-form and protocol-relative URLs are refused', () => {
    expect(forwardPath('http://evil.example/api', '/')).toBeNull();
    expect(forwardPath('//evil.example/api', '/')).toBeNull();
    expect(forwardPath('/p//evil.example/api', '/p')).toBeNull();
    expect(forwardPath(undefined, '/')).toBeNull();
  });

  test('credential query parameters are removed, others kept', () => {
    expect(forwardPath('/api?gitlab-agent-id=1&labelSelector=a&gitlab-csrf-token=x', '/')).toBe('/api?labelSelector=a');
    expect(forwardPath('/api?gitlab-agent-id=1', '/')).toBe('/api');
  });

  test('credentials and hop-by-hop headers are dropped, Via is added', () => {
    const out = forwardHeaders(
      ['Host', 'kas', 'Authorization', 'Bearer x', 'Cookie', 'c', 'Gitlab-Agent-Id', '1', 'X-Csrf-Token', 't', 'Connection', 'keep-alive, X-Hop', 'X-Hop', 'h', 'Keep-Alive', '5', 'Transfer-Encoding', 'chunked', 'Accept', 'application/json', 'Content-Length', '5', 'Via', '1.0 lb'],
      false,
    );
    // Content-Length goes too: beside Transfer-Encoding it is void (see the test below).
    expect(out).toEqual([['Accept', 'application/json'], ['Via', `1.0 lb, ${VIA}`]]);
  });

  test('an upgrade keeps exactly Connection: Upgrade and the Upgrade header', () => {
    const raw = ['Connection', 'Upgrade', 'Upgrade', 'SPDY/3.1', 'X-Stream-Protocol-Version', 'v4.channel.k8s.io'];
    expect(isUpgradeRequest(rawConnectionTokens(['Connection', 'Upgrade']), 'SPDY/3.1')).toBe(true);
    expect(isUpgradeRequest(rawConnectionTokens(['Connection', 'keep-alive']), 'websocket')).toBe(false);
    expect(forwardHeaders(raw, true)).toEqual([['X-Stream-Protocol-Version', 'v4.channel.k8s.io'], ['Connection', 'Upgrade'], ['Upgrade', 'SPDY/3.1'], ['Via', VIA]]);
  });

  test('client Impersonate-* headers are detected in any case', () => {
    expect(rawHasImpersonationHeaders(['impersonate-user', 'x'])).toBe(true);
    expect(rawHasImpersonationHeaders(['Impersonate-Extra-Scopes', 'x'])).toBe(true);
    expect(rawHasImpersonationHeaders(['Accept', 'x'])).toBe(false);
  });

  test('response hop-by-hop headers are dropped unless the connection was upgraded', () => {
    const h: [string, string][] = [['Content-Type', 'a'], ['Transfer-Encoding', 'chunked'], ['Connection', 'Upgrade'], ['Upgrade', 'websocket']];
    expect(responseHeaders(h, false)).toEqual([['Content-Type', 'a']]);
    expect(responseHeaders(h, true)).toEqual([['Content-Type', 'a'], ['Connection', 'Upgrade'], ['Upgrade', 'websocket']]);
  });
});

test('a Content-Length beside Transfer-Encoding is not forwarded (the body was framed by Transfer-Encoding)', () => {
  const out = forwardHeaders(['Content-Length', '4', 'Transfer-Encoding', 'chunked', 'X-Kept', 'yes'], false);
  expect(out).toEqual([['X-Kept', 'yes'], ['Via', VIA]]);
});
