import { randomBytes } from 'node:crypto';
import { WsFrameReader, type WsReaderHandlers } from './ws-framing.js';

/** One frame as a client sends it (masked unless `masked` is false). */
function frame(opcode: number, payload: Buffer, options: { fin?: boolean; masked?: boolean; rsv?: number; length?: number } = {}): Buffer {
  const masked = options.masked ?? true;
  const length = options.length ?? payload.byteLength;
  const head: number[] = [((options.fin ?? true) ? 0x80 : 0) | (options.rsv ?? 0) | opcode];
  const maskBit = masked ? 0x80 : 0;
  if (length < 126) head.push(maskBit | length);
  else if (length < 65536) head.push(maskBit | 126, length >> 8, length & 0xff);
  else {
    head.push(maskBit | 127);
    const big = Buffer.alloc(8);
    big.writeBigUInt64BE(BigInt(length));
    head.push(...big);
  }
  if (!masked) return Buffer.concat([Buffer.from(head), payload]);
  const key = randomBytes(4);
  const body = Buffer.from(payload.map((b, i) => b ^ key[i & 3]!));
  return Buffer.concat([Buffer.from(head), key, body]);
}

type Event = { kind: string; data?: Buffer; code?: number; text?: string; pieces?: number; binary?: boolean };

function recorder(masked = true, maxPayload = 1 << 20) {
  const events: Event[] = [];
  const handlers: WsReaderHandlers = {
    message: (pieces, length, binary) => {
      const data = Buffer.concat(pieces);
      expect(data.byteLength).toBe(length);
      events.push({ kind: 'message', data, pieces: pieces.length, binary });
    },
    ping: (data) => events.push({ kind: 'ping', data: Buffer.from(data) }),
    pong: (data) => events.push({ kind: 'pong', data: Buffer.from(data) }),
    close: (code, text) => events.push({ kind: 'close', code, text }),
    error: (code, text) => events.push({ kind: 'error', code, text }),
  };
  return { events, reader: new WsFrameReader(masked, maxPayload, handlers) };
}

describe('WsFrameReader', () => {
  const payload = randomBytes(70_000);
  const stream = Buffer.concat([
    frame(2, Buffer.from('first')),
    frame(9, Buffer.from('are you there')),
    frame(2, payload.subarray(0, 300), { fin: false }),
    frame(10, Buffer.from('pong between fragments')),
    frame(0, payload.subarray(300, 70_000 - 1), { fin: false }),
    frame(0, payload.subarray(70_000 - 1)),
    frame(2, Buffer.alloc(0)),
    frame(1, Buffer.from('text')),
    frame(8, Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from('bye')])),
    frame(2, Buffer.from('after the close frame: not read')),
  ]);
  const expected: Event[] = [
    { kind: 'message', data: Buffer.from('first'), binary: true },
    { kind: 'ping', data: Buffer.from('are you there') },
    { kind: 'pong', data: Buffer.from('pong between fragments') },
    { kind: 'message', data: payload, binary: true },
    { kind: 'message', data: Buffer.alloc(0), binary: true },
    { kind: 'message', data: Buffer.from('text'), binary: false },
    { kind: 'close', code: 1000, text: 'bye' },
  ];
  /** The events without piece counts, payloads as hex (jest compares long Buffers byte by byte, slowly). */
  const withoutPieces = (events: Event[]) => events.map(({ pieces: _pieces, data, ...rest }) => (data ? { ...rest, data: data.toString('hex') } : rest));

  test('reads every frame type, fragments and interleaved control frames, from one read', () => {
    const { events, reader } = recorder();
    reader.push(Buffer.from(stream));
    expect(withoutPieces(events)).toEqual(withoutPieces(expected));
    expect(reader.finished).toBe(true);
  });

  test('reads the same whatever the reads are cut into (every cut of one split, then bytes one by one)', () => {
    for (let cut = 1; cut < 400; cut += 7) {
      const { events, reader } = recorder();
      const copy = Buffer.from(stream);
      reader.push(copy.subarray(0, cut));
      reader.push(copy.subarray(cut));
      expect(withoutPieces(events)).toEqual(withoutPieces(expected));
    }
    const { events, reader } = recorder();
    const copy = Buffer.from(stream);
    for (let i = 0; i < copy.byteLength; i++) reader.push(copy.subarray(i, i + 1));
    expect(withoutPieces(events)).toEqual(withoutPieces(expected));
  });

  test('a message that spans reads is handed over as views of them, not joined', () => {
    const { events, reader } = recorder();
    const bytes = frame(2, payload);
    const first = bytes.subarray(0, 40_000);
    const second = bytes.subarray(40_000);
    const seen: Buffer[] = [];
    const spy = new WsFrameReader(true, 1 << 20, {
      message: (pieces) => seen.push(...pieces),
      ping: () => undefined,
      pong: () => undefined,
      close: () => undefined,
      error: () => undefined,
    });
    spy.push(first);
    spy.push(second);
    expect(seen).toHaveLength(2);
    expect(seen[0]!.buffer).toBe(first.buffer);
    expect(seen[1]!.buffer).toBe(second.buffer);
    expect(Buffer.concat(seen).equals(payload)).toBe(true);
    reader.push(Buffer.from(bytes));
    expect(events[0]!.pieces).toBe(1);
  });

  test('16-bit and 64-bit lengths are read', () => {
    const { events, reader } = recorder(true, 1 << 20);
    const big = randomBytes(200_000);
    reader.push(frame(2, payload.subarray(0, 60_000)));
    reader.push(frame(2, big));
    expect(events.map((e) => e.data!.byteLength)).toEqual([60_000, 200_000]);
    expect(events[1]!.data!.equals(big)).toBe(true);
  });

  test('a client reads unmasked frames and refuses masked ones', () => {
    const { events, reader } = recorder(false);
    reader.push(frame(2, Buffer.from('hello'), { masked: false }));
    reader.push(frame(2, Buffer.from('hello')));
    expect(events.map((e) => [e.kind, e.code])).toEqual([['message', undefined], ['error', 1002]]);
  });

  const violations: Array<[string, Buffer, number]> = [
    ['an unmasked frame from a client', frame(2, Buffer.from('x'), { masked: false }), 1002],
    ['a set RSV bit', frame(2, Buffer.from('x'), { rsv: 0x40 }), 1002],
    ['an unknown data opcode', frame(3, Buffer.from('x')), 1002],
    ['an unknown control opcode', frame(11, Buffer.from('x')), 1002],
    ['a fragmented control frame', frame(9, Buffer.from('x'), { fin: false }), 1002],
    ['a control frame over 125 bytes', frame(9, Buffer.alloc(126)), 1002],
    ['a continuation without a message', frame(0, Buffer.from('x')), 1002],
    ['a new message inside a fragmented one', Buffer.concat([frame(2, Buffer.from('x'), { fin: false }), frame(2, Buffer.from('y'))]), 1002],
    ['a close frame of one byte', frame(8, Buffer.from([3])), 1002],
    ['a close code that may not be sent', frame(8, Buffer.from([0x03, 0xed])), 1002],
    ['a close reason that is not UTF-8', frame(8, Buffer.from([0x03, 0xe8, 0xff, 0xfe])), 1007],
    ['a length beyond 2^53', Buffer.from([0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3, 4]), 1009],
  ];
  test.each(violations)('%s is refused with %d', (_name, bytes, code) => {
    const { events, reader } = recorder();
    reader.push(Buffer.concat([bytes, frame(2, Buffer.from('not read'))]));
    expect(events).toEqual([{ kind: 'error', code, text: expect.any(String) }]);
    expect(reader.finished).toBe(true);
  });

  test('a message longer than maxPayload is refused (1009) from its header, before its bytes arrive; fragments count together', () => {
    const { events, reader } = recorder(true, 1000);
    reader.push(frame(2, Buffer.alloc(1001)).subarray(0, 8));
    expect(events).toEqual([{ kind: 'error', code: 1009, text: expect.any(String) }]);
    const second = recorder(true, 1000);
    second.reader.push(Buffer.concat([frame(2, Buffer.alloc(600), { fin: false }), frame(0, Buffer.alloc(401))]));
    expect(second.events).toEqual([{ kind: 'error', code: 1009, text: expect.any(String) }]);
    const exact = recorder(true, 1000);
    exact.reader.push(Buffer.concat([frame(2, Buffer.alloc(600), { fin: false }), frame(0, Buffer.alloc(400))]));
    expect(exact.events.map((e) => e.kind)).toEqual(['message']);
  });

  test('a close frame without a code reads as 1005', () => {
    const { events, reader } = recorder();
    reader.push(frame(8, Buffer.alloc(0)));
    expect(events).toEqual([{ kind: 'close', code: 1005, text: '' }]);
  });
});
