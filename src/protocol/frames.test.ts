/**
 * The frame codec, pinned with byte fixtures: a second implementation must produce and accept exactly
 * these bytes. Every refusal must be a coded TunnelError, never a crash or a silently accepted frame.
 */
import { Packr } from 'msgpackr';
import { TunnelError, type TunnelErrorCode } from './errors.js';
import { FrameKind, HEAD_FRAME_BASE, MAX_REASON_LENGTH, MAX_UINT31, decodeFrame, decodeFrameV2, encodeFrame, encodeHeadFrame, encodeRawData, packHead, type Frame, type Head } from './frames.js';

/** Hex with optional spaces (used to show the msgpack structure) to bytes. */
function bytes(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
}

function hexOf(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** Encodes any value as msgpack, for refusal cases that are easier to read as values than as bytes. */
const anyPackr = new Packr({ useRecords: false, moreTypes: false });
function msgpack(value: unknown): Uint8Array {
  return anyPackr.pack(value);
}

/** The error decodeFrame throws for `message`; fails the test in plain words when it accepts it. */
function refusalOf(message: Uint8Array): TunnelError {
  let frame: Frame;
  try {
    frame = decodeFrame(message);
  } catch (err) {
    if (!(err instanceof TunnelError)) throw new Error(`decodeFrame threw ${String(err)} instead of a coded TunnelError`, { cause: err });
    return err;
  }
  throw new Error(`decodeFrame accepted ${hexOf(message).slice(0, 80)} as a frame of kind ${frame.kind}, but it must be refused`);
}

/** A frame with binary fields as hex, so that Buffers and Uint8Arrays of equal bytes compare equal. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return { bin: hexOf(value) };
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

describe('frame fixtures: encode gives exactly these bytes, and decoding the bytes gives the frame back', () => {
  const fixtures: Array<{ name: string; frame: Frame; hex: string }> = [
    {
      name: 'HELLO with a version',
      frame: { kind: FrameKind.HELLO, body: { v: 1 } },
      // [1, {"v": 1}]
      hex: '92 01 de0001 a176 01',
    },
    {
      name: 'WELCOME with limits',
      frame: { kind: FrameKind.WELCOME, body: { v: 1, limits: { maxFrameSize: 4096 } } },
      // [2, {"v": 1, "limits": {"maxFrameSize": 4096}}]
      hex: '92 02 de0002 a176 01 a66c696d697473 de0001 ac6d61784672616d6553697a65 cd1000',
    },
    {
      name: 'OPEN with a head only',
      frame: { kind: FrameKind.OPEN, id: 1, head: { path: '/' }, data: null, fin: false },
      // [3, 1, {"path": "/"}, nil, false]
      hex: '95 03 01 de0001 a470617468 a12f c0 c2',
    },
    {
      name: 'OPEN with a head, first data and the end of the direction',
      frame: { kind: FrameKind.OPEN, id: 3, head: { path: '/' }, data: new Uint8Array([1, 2, 3]), fin: true },
      // [3, 3, {"path": "/"}, bin(010203), true]
      hex: '95 03 03 de0001 a470617468 a12f c403010203 c3',
    },
    {
      name: 'REPLY with a status and data',
      frame: { kind: FrameKind.REPLY, id: 2, head: { status: 200 }, data: new Uint8Array([0xff]), fin: false },
      // [4, 2, {"status": 200}, bin(ff), false]
      hex: '95 04 02 de0001 a6737461747573 ccc8 c401ff c2',
    },
    {
      name: 'DATA with bytes',
      frame: { kind: FrameKind.DATA, id: 7, data: new Uint8Array([0x68, 0x69]), fin: false },
      // [5, 7, bin("hi"), false]
      hex: '94 05 07 c4026869 c2',
    },
    {
      name: 'DATA that only ends the direction',
      frame: { kind: FrameKind.DATA, id: 7, data: new Uint8Array(0), fin: true },
      // [5, 7, bin(), true]
      hex: '94 05 07 c400 c3',
    },
    {
      name: 'WINDOW with the largest stream id',
      frame: { kind: FrameKind.WINDOW, id: MAX_UINT31, increment: 65536 },
      // [6, 2147483647, 65536]
      hex: '93 06 ce7fffffff ce00010000',
    },
    {
      name: 'RESET with a code and a message',
      frame: { kind: FrameKind.RESET, id: 9, code: 11, message: 'client went away' },
      // [7, 9, 11, "client went away"]
      hex: '94 07 09 0b b0636c69656e742077656e742061776179',
    },
    {
      name: 'PING',
      frame: { kind: FrameKind.PING, nonce: 42 },
      hex: '92 08 2a',
    },
    {
      name: 'PONG',
      frame: { kind: FrameKind.PONG, nonce: 42 },
      hex: '92 09 2a',
    },
    {
      name: 'GOAWAY',
      frame: { kind: FrameKind.GOAWAY, code: 15, message: 'restart', lastStreamId: 8, graceMs: 30000 },
      // [10, 15, "restart", 8, 30000]
      hex: '95 0a 0f a772657374617274 08 cd7530',
    },
  ];

  test.each(fixtures)('$name is encoded as the fixture bytes', ({ frame, hex }) => {
    expect(hexOf(encodeFrame(frame))).toBe(hexOf(bytes(hex)));
  });

  test.each(fixtures)('$name is decoded from the fixture bytes', ({ frame, hex }) => {
    expect(plain(decodeFrame(bytes(hex)))).toEqual(plain(frame));
  });

  test('every frame kind has a fixture', () => {
    const covered = new Set(fixtures.map((f) => f.frame.kind));
    expect([...covered].sort((a, b) => a - b)).toEqual(Object.values(FrameKind).sort((a, b) => a - b));
  });

  test('the compact forms another encoder may choose (fixmap, wide integers) decode to the same frames', () => {
    // [1, {"v": 1}] with a fixmap instead of map16.
    expect(decodeFrame(bytes('92 01 81 a176 01'))).toEqual({ kind: FrameKind.HELLO, body: { v: 1 } });
    // [5, 7 as uint32, bin("hi"), false]
    expect(plain(decodeFrame(bytes('94 05 ce00000007 c4026869 c2')))).toEqual(plain({ kind: FrameKind.DATA, id: 7, data: new Uint8Array([0x68, 0x69]), fin: false }));
    // [3, 1, {}, nil, false] with an empty fixmap head
    expect(decodeFrame(bytes('95 03 01 80 c0 c2'))).toEqual({ kind: FrameKind.OPEN, id: 1, head: {}, data: null, fin: false });
  });

  test('a head with every kind of plain value survives a round trip unchanged', () => {
    const head = {
      s: 'ünïcødé ✓',
      n: -12345,
      f: 1.5,
      big: 2 ** 40,
      t: true,
      no: null,
      bin: new Uint8Array([0, 1, 254, 255]),
      list: [1, 'two', [3, [4]], { five: 5 }],
      map: { nested: { deeper: ['x'] } },
    };
    const frame: Frame = { kind: FrameKind.OPEN, id: MAX_UINT31, head, data: new Uint8Array(70_000).fill(9), fin: true };
    expect(plain(decodeFrame(encodeFrame(frame)))).toEqual(plain(frame));
  });

  test('a reset message of exactly the maximum length is accepted', () => {
    const message = 'm'.repeat(MAX_REASON_LENGTH);
    expect(decodeFrame(msgpack([FrameKind.RESET, 1, 11, message]))).toEqual({ kind: FrameKind.RESET, id: 1, code: 11, message });
  });
});

describe('frame refusals: each is a TunnelError with the code the session closes with', () => {
  const notMsgpack: Array<[string, string]> = [
    ['an empty message', ''],
    ['a truncated array', '94 05 01'],
    ['a value followed by trailing bytes', '92 08 2a 00'],
    ['the never-used byte 0xc1', 'c1'],
    ['an unknown msgpack extension type', 'd4 05 00'],
    ['a float64 cut short', '92 08 cb3ff8'],
  ];
  test.each(notMsgpack)('%s is refused as MALFORMED_FRAME', (_name, hex) => {
    expect(refusalOf(bytes(hex)).code).toBe('MALFORMED_FRAME');
  });

  const shapes: Array<[string, unknown, TunnelErrorCode]> = [
    ['a bare integer instead of an array', 5, 'MALFORMED_FRAME'],
    ['a string instead of an array', 'DATA', 'MALFORMED_FRAME'],
    ['a map instead of an array', { kind: 5 }, 'MALFORMED_FRAME'],
    ['nil instead of an array', null, 'MALFORMED_FRAME'],
    ['an empty array', [], 'MALFORMED_FRAME'],
    ['a kind that is a string', ['5', 1, new Uint8Array(0), false], 'MALFORMED_FRAME'],
    ['a kind that is a float', [5.5, 1, new Uint8Array(0), false], 'MALFORMED_FRAME'],
    ['a kind that is a boolean', [true], 'MALFORMED_FRAME'],
    ['kind 0', [0], 'UNKNOWN_FRAME_KIND'],
    ['kind 11 (one past GOAWAY)', [11, 1, 2], 'UNKNOWN_FRAME_KIND'],
    ['kind 127 with arbitrary fields', [127, 'x', { y: 1 }], 'UNKNOWN_FRAME_KIND'],
    ['a negative kind', [-3], 'UNKNOWN_FRAME_KIND'],
  ];
  test.each(shapes)('%s is refused as %s', (_name, value, code) => {
    expect(refusalOf(msgpack(value)).code).toBe(code);
  });

  const bin = new Uint8Array([1]);
  const arity: Array<[string, unknown[]]> = [
    ['HELLO without a body', [FrameKind.HELLO]],
    ['HELLO with an extra element', [FrameKind.HELLO, { v: 1 }, 1]],
    ['WELCOME with an extra element', [FrameKind.WELCOME, { v: 1 }, null]],
    ['OPEN without fin', [FrameKind.OPEN, 1, {}, null]],
    ['OPEN with an extra element', [FrameKind.OPEN, 1, {}, null, false, 0]],
    ['REPLY without fin', [FrameKind.REPLY, 2, {}, null]],
    ['DATA without fin', [FrameKind.DATA, 1, bin]],
    ['DATA with an extra element', [FrameKind.DATA, 1, bin, false, false]],
    ['WINDOW without an increment', [FrameKind.WINDOW, 1]],
    ['WINDOW with an extra element', [FrameKind.WINDOW, 1, 10, 10]],
    ['RESET without a message', [FrameKind.RESET, 1, 11]],
    ['PING without a nonce', [FrameKind.PING]],
    ['PONG with an extra element', [FrameKind.PONG, 1, 2]],
    ['GOAWAY without a grace', [FrameKind.GOAWAY, 15, 'bye', 0]],
  ];
  test.each(arity)('%s (wrong number of elements) is refused as MALFORMED_FRAME', (_name, value) => {
    expect(refusalOf(msgpack(value)).code).toBe('MALFORMED_FRAME');
  });

  const types: Array<[string, unknown[]]> = [
    ['a HELLO body that is a string', [FrameKind.HELLO, 'hello']],
    ['a HELLO body that is an array', [FrameKind.HELLO, [1]]],
    ['a HELLO body that is binary', [FrameKind.HELLO, bin]],
    ['a WELCOME body that is nil', [FrameKind.WELCOME, null]],
    ['an OPEN head that is an array', [FrameKind.OPEN, 1, ['path', '/'], null, false]],
    ['an OPEN head that is nil', [FrameKind.OPEN, 1, null, null, false]],
    ['an OPEN head that is binary', [FrameKind.OPEN, 1, bin, null, false]],
    ['OPEN data that is a string', [FrameKind.OPEN, 1, {}, 'data', false]],
    ['an OPEN fin that is nil', [FrameKind.OPEN, 1, {}, null, null]],
    ['a REPLY fin that is 1', [FrameKind.REPLY, 2, {}, null, 1]],
    ['DATA that is a string', [FrameKind.DATA, 1, 'hello', false]],
    ['DATA that is an array of numbers', [FrameKind.DATA, 1, [104, 105], false]],
    ['DATA that is nil', [FrameKind.DATA, 1, null, false]],
    ['a DATA fin that is 0', [FrameKind.DATA, 1, bin, 0]],
    ['a RESET code that is a string', [FrameKind.RESET, 1, 'CANCELLED', 'x']],
    ['a negative RESET code', [FrameKind.RESET, 1, -1, 'x']],
    ['a RESET message that is binary', [FrameKind.RESET, 1, 11, new Uint8Array([0x78])]],
    ['a PING nonce that is negative', [FrameKind.PING, -1]],
    ['a PONG nonce that is a float', [FrameKind.PONG, 0.5]],
    ['a GOAWAY code that is nil', [FrameKind.GOAWAY, null, 'bye', 0, 0]],
    ['a negative GOAWAY last stream id', [FrameKind.GOAWAY, 15, 'bye', -1, 0]],
    ['a GOAWAY grace that is a float', [FrameKind.GOAWAY, 15, 'bye', 0, 1.5]],
    ['a GOAWAY message that is a number', [FrameKind.GOAWAY, 15, 404, 0, 0]],
  ];
  test.each(types)('%s (a field of the wrong type) is refused as MALFORMED_FRAME', (_name, value) => {
    expect(refusalOf(msgpack(value)).code).toBe('MALFORMED_FRAME');
  });

  const badIds: Array<[string, unknown]> = [
    ['0', 0],
    ['2^31 (one past the largest)', MAX_UINT31 + 1],
    ['2^32', 2 ** 32],
    ['-1', -1],
    ['1.5', 1.5],
    ['a string', '1'],
    ['nil', null],
  ];
  describe.each([
    ['OPEN', (id: unknown) => [FrameKind.OPEN, id, {}, null, false]],
    ['REPLY', (id: unknown) => [FrameKind.REPLY, id, {}, null, false]],
    ['DATA', (id: unknown) => [FrameKind.DATA, id, bin, false]],
    ['WINDOW', (id: unknown) => [FrameKind.WINDOW, id, 100]],
    ['RESET', (id: unknown) => [FrameKind.RESET, id, 11, 'x']],
  ])('%s', (_kind, make) => {
    test.each(badIds)('with stream id %s is refused as MALFORMED_FRAME', (_name, id) => {
      expect(refusalOf(msgpack(make(id))).code).toBe('MALFORMED_FRAME');
    });
  });

  test.each<[string, unknown]>([
    ['0', 0],
    ['-1', -1],
    ['2^31', MAX_UINT31 + 1],
    ['1.5', 1.5],
  ])('a WINDOW increment of %s is refused as MALFORMED_FRAME', (_name, increment) => {
    expect(refusalOf(msgpack([FrameKind.WINDOW, 1, increment])).code).toBe('MALFORMED_FRAME');
  });

  test('a RESET message one character longer than the maximum is refused as MALFORMED_FRAME', () => {
    expect(refusalOf(msgpack([FrameKind.RESET, 1, 11, 'm'.repeat(MAX_REASON_LENGTH + 1)])).code).toBe('MALFORMED_FRAME');
  });

  test('a GOAWAY message one character longer than the maximum is refused as MALFORMED_FRAME', () => {
    expect(refusalOf(msgpack([FrameKind.GOAWAY, 15, 'm'.repeat(MAX_REASON_LENGTH + 1), 0, 0])).code).toBe('MALFORMED_FRAME');
  });

  const extensions: Array<[string, string]> = [
    // 0xd6 0xff: timestamp 32 (msgpackr decodes it as a Date)
    ['a timestamp', 'd6ff 00000000'],
    // 0xd4 0x00: msgpackr's "undefined"
    ['an undefined', 'd400 00'],
    // 0xd4 0x73: msgpackr's Set extension, wrapping an empty array
    ['a Set', 'd473 00 90'],
    // 0xc7 length 1 type 0x42: msgpackr's BigInt extension
    ['a BigInt', 'c7 01 42 05'],
    // 0xc1: the never-used byte, which msgpackr decodes as a marker object
    ['the never-used byte 0xc1', 'c1'],
  ];
  test.each(extensions)('an OPEN head holding %s (a msgpack extension, not a plain value) is refused as MALFORMED_FRAME', (_name, valueHex) => {
    // [3, 1, {"x": <value>}, nil, false]
    expect(refusalOf(bytes(`95 03 01 81 a178 ${valueHex} c0 c2`)).code).toBe('MALFORMED_FRAME');
  });

  test('a HELLO body holding a timestamp deep inside is refused as MALFORMED_FRAME', () => {
    // [1, {"v": 1, "meta": [{"at": <timestamp>}]}]
    expect(refusalOf(bytes('92 01 82 a176 01 a46d657461 91 81 a26174 d6ff 00000000')).code).toBe('MALFORMED_FRAME');
  });

  test('a head that reuses one value thousands of times through structured-clone references is refused (it would be walked a million times)', () => {
    // msgpackr's extensions 0x69 (define id) and 0x70 (pointer) let 12 KB describe a value of a
    // million leaves; validating it would stall the read loop. A plain msgpack head cannot do that.
    const define = (id: number) => `d669 ${id.toString(16).padStart(8, '0')}`;
    const pointers = (id: number, n: number) => `dc ${n.toString(16).padStart(4, '0')} ${`d670 ${id.toString(16).padStart(8, '0')}`.repeat(n)}`;
    const value = `93 ${define(1)} 92 a161 a162 ${define(2)} ${pointers(1, 1000)} ${pointers(2, 1000)}`;
    const started = Date.now();
    expect(refusalOf(bytes(`95 03 01 81 a178 ${value} c0 c2`)).code).toBe('MALFORMED_FRAME');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  test('a head that refers to itself (a cycle) is refused as MALFORMED_FRAME', () => {
    // {"x": <id 1> [<pointer to 1>]}
    expect(refusalOf(bytes('95 03 01 81 a178 d669 00000001 91 d670 00000001 c0 c2')).code).toBe('MALFORMED_FRAME');
  });

  test('a head nested deeper than 16 levels is refused as MALFORMED_FRAME', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 20; i++) deep = [deep];
    expect(refusalOf(msgpack([FrameKind.OPEN, 1, { deep }, null, false])).code).toBe('MALFORMED_FRAME');
  });

  test('100000 nested arrays are refused as MALFORMED_FRAME, and the decoder still works afterwards', () => {
    const nested = new Uint8Array(100_001).fill(0x91);
    nested[100_000] = 0x00;
    expect(refusalOf(nested).code).toBe('MALFORMED_FRAME');
    const nestedMaps = Buffer.concat([Buffer.from('81a178'.repeat(50_000), 'hex'), Buffer.from([0])]);
    expect(refusalOf(nestedMaps).code).toBe('MALFORMED_FRAME');
    // The decoder holds module-level state; a stack overflow half-way must not leave it broken.
    expect(decodeFrame(bytes('92 08 2a'))).toEqual({ kind: FrameKind.PING, nonce: 42 });
    expect(decodeFrame(bytes('95 03 01 81 a178 81 a179 01 c0 c2'))).toEqual({ kind: FrameKind.OPEN, id: 1, head: { x: { y: 1 } }, data: null, fin: false });
  });

  const huge: Array<[string, string]> = [
    ['a str32 of 4 GiB', 'db ffffffff'],
    ['a bin32 of 4 GiB', 'c6 ffffffff'],
    ['an array32 of 4 billion elements', 'dd ffffffff'],
    ['a map32 of 4 billion entries', 'df ffffffff'],
    ['an ext32 of 4 GiB', 'c9 ffffffff 01'],
    ['DATA whose bin32 declares 4 GiB', '94 05 01 c6 ffffffff c2'],
    ['OPEN whose head declares 4 billion entries', '95 03 01 df ffffffff c0 c2'],
    ['DATA whose frame declares 4 billion elements', 'dd ffffffff 05 01 c400 c2'],
  ];
  test.each(huge)('%s in a few bytes is refused as MALFORMED_FRAME without allocating it', (_name, hex) => {
    expect(refusalOf(bytes(hex)).code).toBe('MALFORMED_FRAME');
  });

  test('refusals carry the cause of a msgpack failure and never leak a plain Error', () => {
    const err = refusalOf(bytes('94 05 01'));
    expect(err).toBeInstanceOf(TunnelError);
    expect(err.remote).toBe(false);
    expect(err.cause).toBeInstanceOf(Error);
  });
});

describe('OPEN and REPLY frames around a head packed once', () => {
  const heads: Head[] = [{}, { method: 'GET', path: '/api/v1/pods?limit=500', headers: [['Accept', 'application/json']] }, { s: 'x'.repeat(70_000), n: -1.5, b: new Uint8Array([1, 2]) }];
  const ids = [1, 2, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, MAX_UINT31];
  const datas: (Uint8Array | null)[] = [null, new Uint8Array(0), Buffer.alloc(0xff, 1), Buffer.alloc(0x100, 2), Buffer.alloc(0xffff, 3), Buffer.alloc(0x10000, 4)];

  test('give the same bytes as encodeFrame for every id width, data size (none, bin8, bin16, bin32) and fin', () => {
    for (const kind of [FrameKind.OPEN, FrameKind.REPLY] as const) {
      for (const head of heads) {
        const packed = packHead(head);
        for (const id of ids) {
          for (const data of datas) {
            for (const fin of [false, true]) {
              const mine = encodeHeadFrame(kind, id, packed, data, fin);
              const theirs = encodeFrame({ kind, id, head, data, fin });
              // Compared as buffers: a hex diff of 130 KB frames would take jest seconds each.
              if (!Buffer.from(mine).equals(theirs)) throw new Error(`kind ${kind} id ${id} data ${data?.byteLength ?? 'none'} fin ${fin}: ${hexOf(mine.subarray(0, 40))} != ${hexOf(theirs.subarray(0, 40))}`);
              const back = decodeFrame(mine) as { id: number; fin: boolean; data: Uint8Array | null };
              expect([back.id, back.fin, back.data?.byteLength ?? null]).toEqual([id, fin, data?.byteLength ?? null]);
            }
          }
        }
      }
    }
  });

  test('a head is measured as its OPEN frame with id 1 and no data', () => {
    for (const head of heads) {
      expect(packHead(head).byteLength + HEAD_FRAME_BASE).toBe(encodeFrame({ kind: FrameKind.OPEN, id: 1, head, data: null, fin: false }).byteLength);
    }
  });
});

describe('raw DATA frames (protocol version 2)', () => {
  test('header layout: marker 0, fin flag, two zero bytes, the id as uint32 big-endian, then the payload as is', () => {
    const frame = encodeRawData(0x01020304, Buffer.from('hi'), true);
    expect(frame.toString('hex')).toBe('000100000102030468' + '69');
    expect(decodeFrameV2(frame)).toEqual({ kind: FrameKind.DATA, id: 0x01020304, data: Buffer.from('hi'), fin: true });
  });

  test('the payload is a view of the message, not a copy', () => {
    const frame = encodeRawData(7, Buffer.alloc(1000, 1), false);
    const decoded = decodeFrameV2(frame) as { data: Uint8Array };
    expect(decoded.data.buffer).toBe(frame.buffer);
    expect(decoded.data.byteLength).toBe(1000);
  });

  test('decodeFrameV2 reads msgpack frames as decodeFrame does', () => {
    const ping = encodeFrame({ kind: FrameKind.PING, nonce: 5 });
    expect(decodeFrameV2(ping)).toEqual(decodeFrame(ping));
  });

  test.each([
    ['shorter than its header', '00000000000001'],
    ['id 0', '0000000000000000'],
    ['id above 2^31-1', '0000000080000000'],
    ['unknown flag bits', '0002000000000001'],
    ['nonzero reserved bytes', '0000010000000001'],
  ])('a raw DATA frame %s is MALFORMED_FRAME', (_name, hex) => {
    expect(() => decodeFrameV2(Buffer.from(hex, 'hex'))).toThrow(expect.objectContaining({ code: 'MALFORMED_FRAME' }));
  });

  test('version 1 decoding refuses a raw DATA frame', () => {
    expect(() => decodeFrame(encodeRawData(1, Buffer.from('x'), false))).toThrow(expect.objectContaining({ code: 'MALFORMED_FRAME' }));
  });
});
