/** The cluster event stream's codec: what agentk sends round-trips; what a hostile agent sends is refused with a coded error, holding at most one batch. */
import { Packr } from 'msgpackr';
import { TunnelError } from './errors.js';
import {
  decodeAgentEventsHead,
  decodeEventBatch,
  decodeEventRecord,
  encodeAgentEventsHead,
  encodeEventBatch,
  encodeEventRecord,
  EventBatchReader,
  EVENT_LIMITS,
  MAX_EVENT_BATCH_BYTES,
  MAX_EVENT_BATCH_RECORDS,
  MAX_EVENT_RECORD_BYTES,
  type EventRecord,
} from './cluster-events.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

const record: EventRecord = {
  type: 'Warning',
  reason: 'BackOff',
  message: 'Back-off restarting failed container',
  object: { apiVersion: 'v1', kind: 'Pod', namespace: 'default', name: 'web-1', uid: 'u-1' },
  count: 3,
  firstTime: '2026-12-03T06:00:00Z',
  lastTime: '2026-12-03T06:01:00.123Z',
  reporter: 'kubelet',
};

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof TunnelError) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'no error';
}

function frame(body: Uint8Array): Buffer {
  const out = Buffer.alloc(4 + body.byteLength);
  out.writeUInt32BE(body.byteLength, 0);
  out.set(body, 4);
  return out;
}

describe('cluster event stream codec', () => {
  test('a head and a batch round-trip, in chunks of any size', () => {
    expect(() => decodeAgentEventsHead(encodeAgentEventsHead())).not.toThrow();
    const data = Buffer.concat([encodeEventBatch([encodeEventRecord(record)]), encodeEventBatch([encodeEventRecord({ ...record, count: 4 }), encodeEventRecord(record)])]);
    for (const size of [1, 3, 7, data.length]) {
      const reader = new EventBatchReader();
      const bodies: Buffer[] = [];
      for (let i = 0; i < data.length; i += size) bodies.push(...reader.push(data.subarray(i, i + size)));
      expect(bodies.map((b) => decodeEventBatch(b).map(decodeEventRecord))).toEqual([[record], [{ ...record, count: 4 }, record]]);
      expect(reader.atBoundary).toBe(true);
    }
  });

  test('agentk cuts long strings to their limits before encoding (a surrogate pair is not split)', () => {
    const long = { ...record, message: 'x'.repeat(EVENT_LIMITS.message - 1) + '😀'.repeat(10), reason: 'r'.repeat(5000) };
    const decoded = decodeEventRecord(encodeEventRecord(long));
    expect(decoded.message).toHaveLength(EVENT_LIMITS.message - 1);
    expect(decoded.reason).toHaveLength(EVENT_LIMITS.reason);
  });

  test('a head of another type or version is refused', () => {
    expect(codeOf(() => decodeAgentEventsHead({ t: 'agent_events' }))).toMatch(/^PROTOCOL_ERROR: .*v must be 1/);
    expect(codeOf(() => decodeAgentEventsHead({ t: 'http', v: 1 }))).toMatch(/^PROTOCOL_ERROR/);
  });

  test('a batch length of 0 or over the cap is refused before any of it is buffered', () => {
    const reader = new EventBatchReader();
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(MAX_EVENT_BATCH_BYTES + 1, 0);
    expect(codeOf(() => reader.push(prefix))).toMatch(/^PROTOCOL_ERROR: .*batch length/);
    expect(codeOf(() => new EventBatchReader().push(Buffer.alloc(4)))).toMatch(/^PROTOCOL_ERROR/);
  });

  test('the reader never holds more than one batch, however the data comes', () => {
    const reader = new EventBatchReader();
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(MAX_EVENT_BATCH_BYTES, 0);
    reader.push(prefix);
    let max = 0;
    for (let i = 0; i < MAX_EVENT_BATCH_BYTES / 1024 - 1; i++) {
      reader.push(Buffer.alloc(1024));
      max = Math.max(max, reader.heldBytes);
    }
    expect(max).toBeLessThanOrEqual(MAX_EVENT_BATCH_BYTES);
  });

  test.each([
    ['not msgpack', Buffer.from([0xc1])],
    ['not an array', packr.pack({ a: 1 })],
    ['an empty array', packr.pack([])],
    ['records that are not byte strings', packr.pack([{ type: 'Warning' }])],
    ['too many records', packr.pack(Array.from({ length: MAX_EVENT_BATCH_RECORDS + 1 }, () => Buffer.from(encodeEventRecord(record))))],
  ])('a batch that is %s is refused', (_what, body) => {
    expect(codeOf(() => decodeEventBatch(body))).toMatch(/^PROTOCOL_ERROR/);
  });

  const bad: Array<[string, unknown]> = [
    ['not a map', [1, 2]],
    ['of an unknown type', { ...record, type: 'Error' }],
    ['without a reason', { ...record, reason: undefined }],
    ['with a number for a message', { ...record, message: 42 }],
    ['with a message over 1 KiB', { ...record, message: 'x'.repeat(EVENT_LIMITS.message + 1) }],
    ['with a count of 0', { ...record, count: 0 }],
    ['with a fractional count', { ...record, count: 1.5 }],
    ['with a time that is not RFC 3339', { ...record, lastTime: 'yesterday' }],
    ['without an object', { ...record, object: undefined }],
    ['with an object without a name', { ...record, object: { kind: 'Pod' } }],
  ];
  test.each(bad)('a record %s is refused', (_what, value) => {
    expect(codeOf(() => decodeEventRecord(packr.pack(value)))).toMatch(/^PROTOCOL_ERROR/);
  });

  test('a record over 8 KiB is refused, whatever it holds', () => {
    const big = packr.pack({ ...record, extra: 'x'.repeat(MAX_EVENT_RECORD_BYTES) });
    expect(codeOf(() => decodeEventRecord(big))).toMatch(/^PROTOCOL_ERROR: .*limit is 8192/);
    expect(codeOf(() => decodeEventBatch(packr.pack([big])).map(decodeEventRecord))).toMatch(/^PROTOCOL_ERROR/);
  });

  test('msgpackr pointer extensions are not expanded', () => {
    // 0xd4 0x70: fixext1 of type 0x70 (a pointer), refused by the decoder's options.
    expect(codeOf(() => decodeEventRecord(Buffer.from([0xd4, 0x70, 0x00])))).toMatch(/^PROTOCOL_ERROR/);
  });

  test('unknown keys of a record are ignored (a newer agentk may send more)', () => {
    expect(decodeEventRecord(packr.pack({ ...record, severity: 'high' }))).toEqual(record);
  });

  test('framing helper: a whole batch in one push', () => {
    const body = packr.pack([Buffer.from(encodeEventRecord(record))]);
    expect(new EventBatchReader().push(frame(body))).toHaveLength(1);
  });
});
