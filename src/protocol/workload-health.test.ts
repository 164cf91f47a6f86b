import {
  MAX_HEALTH_NAMESPACES,
  MAX_HEALTH_PROBLEMS_PER_NAMESPACE,
  MAX_WORKLOAD_HEALTH_BYTES,
  WORKLOAD_HEALTH_STREAM,
  decodeWorkloadHealthData,
  decodeWorkloadHealthHead,
  decodeWorkloadHealthReply,
  encodeWorkloadHealthData,
  encodeWorkloadHealthHead,
  encodeWorkloadHealthReply,
  type WorkloadHealthSummary,
} from './workload-health.js';
import { protocolError } from './testing/protocol-error.js';

const GOOD: WorkloadHealthSummary = {
  namespaces: [
    {
      namespace: 'default',
      omitted: 2,
      problems: [
        { kind: 'Deployment', name: 'web', problem: 'Unavailable', desired: 3, available: 1 },
        { kind: 'Pod', name: 'web-1', problem: 'ImagePullBackOff', container: 'app', message: 'Back-off pulling image' },
        { kind: 'Pod', name: 'web-2', problem: 'Pending', since: '2026-01-01T12:00:00.000Z' },
        { kind: 'Job', name: 'migrate', problem: 'Failed', reason: 'BackoffLimitExceeded' },
      ],
    },
  ],
  omitted_namespaces: 1,
  omitted_problems: 4,
};

function bytes(doc: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(doc));
}

describe('workload health protocol', () => {
  it('round-trips a head, a summary and a reply', () => {
    expect(decodeWorkloadHealthHead(encodeWorkloadHealthHead({ instance: 'abc', seq: 7 }))).toEqual({ instance: 'abc', seq: 7 });
    expect(decodeWorkloadHealthData(encodeWorkloadHealthData(GOOD))).toEqual(GOOD);
    expect(decodeWorkloadHealthReply(encodeWorkloadHealthReply())).toEqual({ accepted: true });
  });

  it('refuses bad heads', () => {
    protocolError(() => decodeWorkloadHealthHead({ t: 'other', instance: 'a', seq: 1 }));
    protocolError(() => decodeWorkloadHealthHead({ t: WORKLOAD_HEALTH_STREAM, instance: '', seq: 1 }));
    protocolError(() => decodeWorkloadHealthHead({ t: WORKLOAD_HEALTH_STREAM, instance: 'x'.repeat(65), seq: 1 }));
    protocolError(() => decodeWorkloadHealthHead({ t: WORKLOAD_HEALTH_STREAM, instance: 'a', seq: -1 }));
    protocolError(() => decodeWorkloadHealthHead({ t: WORKLOAD_HEALTH_STREAM, instance: 'a', seq: 1.5 }));
    protocolError(() => decodeWorkloadHealthHead({ t: WORKLOAD_HEALTH_STREAM, instance: 'a', seq: '1' }));
    protocolError(() => decodeWorkloadHealthReply({ accepted: 'yes' }));
  });

  it('refuses data that is not a UTF-8 JSON object, or too large', () => {
    protocolError(() => decodeWorkloadHealthData(new Uint8Array([0xff, 0xfe])));
    protocolError(() => decodeWorkloadHealthData(bytes('[1,2')));
    protocolError(() => decodeWorkloadHealthData(bytes([])));
    protocolError(() => decodeWorkloadHealthData(bytes(null)));
    expect(protocolError(() => decodeWorkloadHealthData(new Uint8Array(MAX_WORKLOAD_HEALTH_BYTES + 1)))).toMatch(/limit/);
  });

  it('refuses summaries of the wrong shape, naming the field', () => {
    const ns = GOOD.namespaces[0]!;
    const cases: Array<[unknown, RegExp]> = [
      [{ ...GOOD, extra: 1 }, /unknown field "extra"/],
      [{ ...GOOD, namespaces: {} }, /namespaces must be an array/],
      [{ ...GOOD, omitted_namespaces: -1 }, /omitted_namespaces/],
      [{ ...GOOD, omitted_problems: 1e300 }, /omitted_problems/],
      [{ ...GOOD, namespaces: [ns, ns] }, /listed twice/],
      [{ ...GOOD, namespaces: [{ ...ns, namespace: '' }] }, /namespace must be a non-empty string/],
      [{ ...GOOD, namespaces: [{ ...ns, namespace: 'n'.repeat(254) }] }, /namespace must be/],
      [{ ...GOOD, namespaces: [{ ...ns, omitted: '2' }] }, /omitted must be/],
      [{ ...GOOD, namespaces: [{ ...ns, problems: [{ kind: 'Secret', name: 'x', problem: 'Failed' }] }] }, /kind must be one of/],
      [{ ...GOOD, namespaces: [{ ...ns, problems: [{ kind: 'Deployment', name: 'x', problem: 'Unavailable', desired: 1, available: 1 }] }] }, /below desired/],
      [{ ...GOOD, namespaces: [{ ...ns, problems: [{ kind: 'Deployment', name: 'x', problem: 'Unavailable', desired: 1, available: 0, secret: 'x' }] }] }, /unknown field "secret"/],
      [{ ...GOOD, namespaces: [{ ...ns, problems: [{ kind: 'Pod', name: 'x', problem: 'OOMKilled', container: 'c' }] }] }, /problem must be Pending or one of/],
      [{ ...GOOD, namespaces: [{ ...ns, problems: [{ kind: 'Pod', name: 'x', problem: 'Pending', since: 'yesterday' }] }] }, /since must be/],
      [{ ...GOOD, namespaces: [{ ...ns, problems: [{ kind: 'Pod', name: 'x', problem: 'CrashLoopBackOff', container: 'c', message: 'm'.repeat(257) }] }] }, /message must be a string of at most 256/],
      [{ ...GOOD, namespaces: [{ ...ns, problems: [{ kind: 'Job', name: 'x', problem: 'Failed', reason: 5 }] }] }, /reason must be a string/],
      [{ ...GOOD, namespaces: [{ ...ns, problems: [null] }] }, /must be an object/],
    ];
    for (const [doc, message] of cases) expect(protocolError(() => decodeWorkloadHealthData(bytes(doc)))).toMatch(message);
  });

  it('refuses more namespaces or problems than the caps', () => {
    const manyNamespaces = { ...GOOD, namespaces: Array.from({ length: MAX_HEALTH_NAMESPACES + 1 }, (_, i) => ({ namespace: `ns${i}`, problems: [], omitted: 0 })) };
    expect(protocolError(() => decodeWorkloadHealthData(bytes(manyNamespaces)))).toMatch(/at most 200 namespaces/);
    const problem = { kind: 'Job', name: 'j', problem: 'Failed' };
    const manyProblems = { ...GOOD, namespaces: [{ namespace: 'a', omitted: 0, problems: Array.from({ length: MAX_HEALTH_PROBLEMS_PER_NAMESPACE + 1 }, () => problem) }] };
    expect(protocolError(() => decodeWorkloadHealthData(bytes(manyProblems)))).toMatch(/at most 100 problems per namespace/);
    const overall = { ...GOOD, namespaces: Array.from({ length: 11 }, (_, i) => ({ namespace: `ns${i}`, omitted: 0, problems: Array.from({ length: 100 }, () => problem) })) };
    expect(protocolError(() => decodeWorkloadHealthData(bytes(overall)))).toMatch(/at most 1000 problems/);
  });

  it('keeps only the documented fields of what it accepts (no prototype tricks)', () => {
    const doc = JSON.parse('{"namespaces":[],"omitted_namespaces":0,"omitted_problems":0,"__proto__":{"polluted":true}}') as unknown;
    expect(protocolError(() => decodeWorkloadHealthData(bytes(doc)))).toMatch(/unknown field "__proto__"/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
