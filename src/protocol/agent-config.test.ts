import {
  AGENT_CONFIG_STREAM,
  MAX_AGENT_CONFIG_BYTES,
  decodeAgentConfigData,
  decodeAgentConfigHead,
  decodeAgentConfigReply,
  encodeAgentConfigData,
  encodeAgentConfigHead,
  encodeAgentConfigReply,
} from './agent-config.js';
import type { Head } from './frames.js';
import { protocolError } from './testing/protocol-error.js';

const bytes = (s: string) => new TextEncoder().encode(s);

describe('agent_config stream messages', () => {
  test('heads round-trip, with and without a version', () => {
    expect(encodeAgentConfigHead({ commit: 'abc123' })).toEqual({ t: AGENT_CONFIG_STREAM, commit: 'abc123' });
    expect(decodeAgentConfigHead(encodeAgentConfigHead({ commit: 'abc123' }))).toEqual({ commit: 'abc123' });
    expect(decodeAgentConfigHead(encodeAgentConfigHead({ commit: null }))).toEqual({ commit: null });
    // An absent commit is the same as nil.
    expect(decodeAgentConfigHead({ t: AGENT_CONFIG_STREAM })).toEqual({ commit: null });
  });

  test.each<[string, Head]>([
    ['another stream type', { t: 'http', commit: 'a' }],
    ['a number as commit', { t: AGENT_CONFIG_STREAM, commit: 5 }],
    ['an empty commit', { t: AGENT_CONFIG_STREAM, commit: '' }],
    ['an overlong commit', { t: AGENT_CONFIG_STREAM, commit: 'a'.repeat(257) }],
  ])('a head with %s is refused', (_what, head) => {
    protocolError(() => decodeAgentConfigHead(head));
  });

  test('the document round-trips as UTF-8 JSON, keeping sections agentk does not know', () => {
    const doc = { observability: { logging: { level: 'debug' as const } }, gitops: { manifest_projects: [{ id: 'a/b' }] } };
    const data = encodeAgentConfigData(doc);
    expect(new TextDecoder().decode(data)).toBe(JSON.stringify(doc));
    expect(decodeAgentConfigData(data)).toEqual(doc);
    expect(decodeAgentConfigData(bytes('{}'))).toEqual({});
  });

  test.each([
    ['not JSON', bytes('observability: {}'), 'UTF-8 JSON'],
    ['not UTF-8', Uint8Array.from([0x7b, 0xff, 0x7d]), 'UTF-8 JSON'],
    ['a JSON array', bytes('[]'), 'must be a JSON object'],
    ['observability as a string', bytes('{"observability":"x"}'), 'observability must be an object'],
    ['logging as a list', bytes('{"observability":{"logging":[]}}'), 'observability.logging must be an object'],
    ['an unknown level', bytes('{"observability":{"logging":{"level":"trace"}}}'), 'observability.logging.level must be one of info, debug, warn, error'],
    ['more than the limit', bytes(`{"x":"${'a'.repeat(MAX_AGENT_CONFIG_BYTES)}"}`), `the limit is ${MAX_AGENT_CONFIG_BYTES}`],
    ['events as a list', bytes('{"observability":{"events":[]}}'), 'observability.events must be an object'],
    ['an unknown event type', bytes('{"observability":{"events":{"types":["Error"]}}}'), 'observability.events.types must be a list of Normal, Warning'],
    ['a namespace that is a number', bytes('{"observability":{"events":{"namespaces":[5]}}}'), 'observability.events.namespaces must be a list'],
    ['a rate of 0', bytes('{"observability":{"events":{"rate_limit":0}}}'), 'observability.events.rate_limit must be a number above 0'],
    ['a burst of 0', bytes('{"observability":{"events":{"burst":0}}}'), 'observability.events.burst must be an integer'],
  ])('data that is %s is refused, saying why', (_what, data, message) => {
    expect(protocolError(() => decodeAgentConfigData(data))).toContain(message);
  });

  test('the encoder refuses a document over the limit instead of sending it', () => {
    protocolError(() => encodeAgentConfigData({ x: 'a'.repeat(MAX_AGENT_CONFIG_BYTES) }));
  });

  test('replies round-trip; a refusal always carries a reason, cut to 1024 characters', () => {
    expect(decodeAgentConfigReply(encodeAgentConfigReply({ applied: true }))).toEqual({ applied: true });
    expect(decodeAgentConfigReply(encodeAgentConfigReply({ applied: false, error: 'bad' }))).toEqual({ applied: false, error: 'bad' });
    expect(decodeAgentConfigReply({ applied: false })).toEqual({ applied: false, error: 'not applied' });
    expect((encodeAgentConfigReply({ applied: false, error: 'x'.repeat(5000) }).error as string).length).toBe(1024);
    protocolError(() => decodeAgentConfigReply({ applied: 'yes' }));
    protocolError(() => decodeAgentConfigReply({ applied: false, error: 'x'.repeat(1025) }));
    protocolError(() => decodeAgentConfigReply({ applied: false, error: 5 }));
  });
});
