import { AGENT_INFO_STREAM, checkAgentInfo, decodeAgentInfo, decodeAgentInfoHead, decodeAgentInfoReply, encodeAgentInfo, encodeAgentInfoHead, encodeAgentInfoReply, MAX_AGENT_INFO_BYTES, type AgentInfo } from './agent-info.js';
import { protocolError } from './testing/protocol-error.js';

const info: AgentInfo = {
  version: '1.2.3',
  commit: 'abc123',
  pod_namespace: 'gitlab-agent',
  pod_name: 'agentk-5c9d-x',
  pod_uid: '0f5e3a52-7c1b-4a55-9d8e-2f1a3b4c5d6e',
  architecture: 'amd64',
  kubernetes_version: 'v1.20.2',
  extra_telemetry: { installation_method: 'helm', helm_chart_version: '0.1.0' },
};

const bytes = (doc: unknown) => new TextEncoder().encode(JSON.stringify(doc));

describe('agent_info', () => {
  test('round trip: what agentk encodes kas decodes to the same fields', () => {
    expect(encodeAgentInfoHead()).toEqual({ t: AGENT_INFO_STREAM });
    expect(() => decodeAgentInfoHead(encodeAgentInfoHead())).not.toThrow();
    expect(decodeAgentInfo(encodeAgentInfo(info))).toEqual(info);
    expect(decodeAgentInfoReply(encodeAgentInfoReply({ registered: true }))).toEqual({ registered: true });
  });

  test('missing optional fields are empty; unknown keys (a newer agentk) are ignored and not kept', () => {
    expect(decodeAgentInfo(bytes({ version: '1.0.0', future_field: { deep: [1, 2] } }))).toEqual({
      version: '1.0.0', commit: '', pod_namespace: '', pod_name: '', pod_uid: '', architecture: '', kubernetes_version: '', extra_telemetry: {},
    });
  });

  test.each<[string, Uint8Array, RegExp]>([
    ['not UTF-8', new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), /UTF-8 JSON/],
    ['not JSON', new TextEncoder().encode('{"version": '), /UTF-8 JSON/],
    ['a JSON array', bytes([info]), /must be a JSON object/],
    ['null', bytes(null), /must be a JSON object/],
    ['a string', bytes('agentk'), /must be a JSON object/],
    ['no version', bytes({ ...info, version: undefined }), /version must be a string/],
    ['an empty version', bytes({ ...info, version: '' }), /version must not be empty/],
    ['a number as a field', bytes({ ...info, kubernetes_version: 1.2 }), /kubernetes_version must be a string/],
    ['an object as a field', bytes({ ...info, pod_name: { $gt: '' } }), /pod_name must be a string/],
    ['a field too long', bytes({ ...info, pod_uid: 'u'.repeat(129) }), /pod_uid is longer than 128/],
    ['a control character', bytes({ ...info, pod_name: 'agentk\nFAKE LOG LINE' }), /pod_name holds control characters/],
    ['an architecture with odd characters', bytes({ ...info, architecture: 'amd64; rm -rf' }), /architecture must be made of/],
    ['telemetry that is a list', bytes({ ...info, extra_telemetry: [['a', 'b']] }), /extra_telemetry must be an object/],
    ['telemetry with 21 entries', bytes({ ...info, extra_telemetry: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v'])) }), /21 entries; the limit is 20/],
    ['a telemetry key of 65 characters', bytes({ ...info, extra_telemetry: { ['k'.repeat(65)]: 'v' } }), /must be 1 to 64 characters/],
    ['an empty telemetry key', bytes({ ...info, extra_telemetry: { '': 'v' } }), /must be 1 to 64 characters/],
    ['an upper-case telemetry key', bytes({ ...info, extra_telemetry: { Method: 'v' } }), /must be 1 to 64 characters/],
    ['a telemetry value of 257 characters', bytes({ ...info, extra_telemetry: { method: 'v'.repeat(257) } }), /longer than 256/],
    ['a telemetry value that is not a string', bytes({ ...info, extra_telemetry: { method: ['helm'] } }), /extra_telemetry.method must be a string/],
    ['a document over 16 KiB', bytes({ ...info, padding: 'x'.repeat(MAX_AGENT_INFO_BYTES) }), /16384/],
  ])('%s is refused with PROTOCOL_ERROR', (_name, data, message) => {
    expect(protocolError(() => decodeAgentInfo(data))).toMatch(message);
  });

  test('a "__proto__" telemetry key is data, never the prototype of what kas keeps', () => {
    const decoded = decodeAgentInfo(new TextEncoder().encode(`{"version":"1","extra_telemetry":{"__proto__":"x","constructor":"y"}}`));
    expect(Object.getPrototypeOf(decoded.extra_telemetry)).toBe(Object.prototype);
    expect(Object.keys(decoded.extra_telemetry).sort()).toEqual(['__proto__', 'constructor']);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  test('the largest valid registration fits the limit', () => {
    const largest = checkAgentInfo({
      version: 'v'.repeat(256), commit: 'c'.repeat(256), pod_namespace: 'n'.repeat(253), pod_name: 'p'.repeat(253), pod_uid: 'u'.repeat(128), architecture: 'a'.repeat(32), kubernetes_version: 'k'.repeat(256),
      extra_telemetry: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`${String(i).padStart(2, '0')}${'k'.repeat(62)}`, 'v'.repeat(256)])),
    });
    expect(encodeAgentInfo(largest).byteLength).toBeLessThan(MAX_AGENT_INFO_BYTES);
  });

  test('encoding checks too: agentk never sends what kas would refuse', () => {
    expect(protocolError(() => encodeAgentInfo({ ...info, extra_telemetry: { 'Bad Key': 'x' } }))).toMatch(/must be 1 to 64 characters/);
  });

  test('a head of another type and a reply without registered are refused', () => {
    expect(protocolError(() => decodeAgentInfoHead({ t: 'agent_config' }))).toMatch(/stream type/);
    expect(protocolError(() => decodeAgentInfoReply({}))).toMatch(/registered/);
  });
});
