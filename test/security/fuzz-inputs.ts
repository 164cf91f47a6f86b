/**
 * Generators of hostile input for the fuzz suites (test/security/fuzz.test.ts and `npm run fuzz`):
 * frames that are valid but out of place, valid frames with bytes flipped, cut or extended, msgpack
 * values of the wrong types, huge declared lengths, deep nesting, extension types, unknown kinds,
 * random handshakes, and HTTP request and response heads. Everything is a fast-check arbitrary, so
 * a case is reproduced from its seed alone.
 */
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { FrameKind, encodeFrame, type Frame, type Head, type WireValue } from '../../src/protocol/frames.js';
import { PROTOCOL_VERSION } from '../../src/protocol/session.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

/** Packs any JS value the way a careless or hostile peer might (no checks). */
export function packAny(v: unknown): Uint8Array {
  return packr.pack(v);
}

const uint31 = fc.integer({ min: 0, max: 0x7fffffff });
/** Stream ids: mostly small (so they hit streams that exist), sometimes anywhere, sometimes invalid. */
const streamId = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 12 }) }, { weight: 2, arbitrary: uint31 }, { weight: 1, arbitrary: fc.constantFrom(0, 0x7fffffff) });
const keyString = fc.oneof({ weight: 8, arbitrary: fc.string({ maxLength: 12 }) }, { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'toString', 'v', 'limits', 't', 'status', 'headers', 'method', 'path') });

/** Values a head may hold, plus the ones it may not (NaN, infinities), nested a few levels. */
export const wireValue: fc.Arbitrary<WireValue> = fc.letrec<{ value: WireValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double(),
    fc.string({ maxLength: 40 }),
    fc.uint8Array({ maxLength: 64 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(keyString, tie('value'), { maxKeys: 4 }),
  ),
})).value;

export const anyHead: fc.Arbitrary<Head> = fc.dictionary(keyString, wireValue, { maxKeys: 6 }) as fc.Arbitrary<Head>;

const limitsValue = fc.oneof(
  fc.record({
    maxFrameSize: fc.oneof(fc.integer({ min: 4096, max: 2 * 1024 * 1024 }), fc.integer(), fc.double()),
    maxStreams: fc.oneof(fc.integer({ min: 1, max: 2048 }), fc.integer()),
    maxHeaderSize: fc.oneof(fc.integer({ min: 256, max: 65536 }), fc.integer()),
    initialWindow: fc.oneof(fc.integer({ min: 1024, max: 1 << 20 }), fc.integer()),
  }),
  wireValue,
);

/** A valid handshake body of this side's version, with sane limits. */
export function validHello(features: string[] = ['http']): Head {
  return { v: PROTOCOL_VERSION, limits: { maxFrameSize: 1 << 20, maxStreams: 64, maxHeaderSize: 65536, initialWindow: 256 * 1024 }, agentVersion: 'fuzz', podName: 'fuzz', features };
}

/** Handshake bodies: random versions, limits in and out of range, metadata of every type. */
export const handshakeBody: fc.Arbitrary<Head> = fc
  .record({
    v: fc.oneof({ weight: 4, arbitrary: fc.constant<WireValue>(PROTOCOL_VERSION) }, { weight: 1, arbitrary: wireValue }),
    limits: limitsValue,
    extra: anyHead,
    features: fc.oneof(fc.array(fc.string({ maxLength: 300 }), { maxLength: 100 }), wireValue),
    agentVersion: fc.oneof(fc.string({ maxLength: 1000 }), wireValue),
  })
  .map(({ v, limits, extra, features, agentVersion }) => ({ ...extra, v, limits: limits as WireValue, features, agentVersion }));

/** One well-formed frame of any kind, with random (often out of place) fields. */
export const validFrame: fc.Arbitrary<Frame> = fc.oneof(
  handshakeBody.map((body): Frame => ({ kind: FrameKind.HELLO, body })),
  handshakeBody.map((body): Frame => ({ kind: FrameKind.WELCOME, body })),
  fc.record({ id: streamId, head: anyHead, data: fc.option(fc.uint8Array({ maxLength: 512 })), fin: fc.boolean() }).map((f): Frame => ({ kind: FrameKind.OPEN, ...f })),
  fc.record({ id: streamId, head: anyHead, data: fc.option(fc.uint8Array({ maxLength: 512 })), fin: fc.boolean() }).map((f): Frame => ({ kind: FrameKind.REPLY, ...f })),
  fc.record({ id: streamId, data: fc.uint8Array({ maxLength: 2048 }), fin: fc.boolean() }).map((f): Frame => ({ kind: FrameKind.DATA, ...f })),
  fc.record({ id: streamId, increment: fc.integer({ min: 1, max: 0x7fffffff }) }).map((f): Frame => ({ kind: FrameKind.WINDOW, ...f })),
  fc.record({ id: streamId, code: fc.oneof(fc.integer({ min: 0, max: 25 }), uint31), message: fc.string({ maxLength: 200 }) }).map((f): Frame => ({ kind: FrameKind.RESET, ...f })),
  uint31.map((nonce): Frame => ({ kind: FrameKind.PING, nonce })),
  uint31.map((nonce): Frame => ({ kind: FrameKind.PONG, nonce })),
  fc.record({ code: fc.integer({ min: 0, max: 25 }), message: fc.string({ maxLength: 200 }), lastStreamId: streamId, graceMs: fc.integer({ min: 0, max: 5000 }) }).map((f): Frame => ({ kind: FrameKind.GOAWAY, ...f })),
);

interface Mutation {
  op: 'flip' | 'set' | 'truncate' | 'extend' | 'insert' | 'delete';
  pos: number;
  value: number;
  bytes: Uint8Array;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  op: fc.constantFrom('flip', 'set', 'truncate', 'extend', 'insert', 'delete'),
  pos: fc.nat(),
  value: fc.integer({ min: 0, max: 255 }),
  bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
});

function mutate(input: Uint8Array, mutations: Mutation[]): Uint8Array {
  let b = Buffer.from(input);
  for (const m of mutations) {
    const pos = b.length === 0 ? 0 : m.pos % b.length;
    switch (m.op) {
      case 'flip':
        if (b.length > 0) b[pos] = b[pos]! ^ (1 << (m.value % 8));
        break;
      case 'set':
        if (b.length > 0) b[pos] = m.value;
        break;
      case 'truncate':
        b = b.subarray(0, pos);
        break;
      case 'extend':
        b = Buffer.concat([b, m.bytes]);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, pos), m.bytes, b.subarray(pos)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + 1 + (m.value % 8))]);
        break;
    }
  }
  return b;
}

/** msgpack headers that declare far more than follows: arrays, maps, binaries, strings, extensions. */
const hugeLength = fc
  .record({
    marker: fc.constantFrom(0xdd, 0xdf, 0xc6, 0xdb, 0xc9, 0xdc, 0xde, 0xc5, 0xda, 0xc8),
    len: fc.oneof(fc.constant(0xffffffff), fc.constant(0x7fffffff), fc.integer({ min: 0, max: 0xffffffff })),
    prefix: fc.constantFrom<number[]>([], [0x95, 0x03, 0x01], [0x95, 0x04, 0x02], [0x94, 0x05, 0x01], [0x92, 0x01]),
    tail: fc.uint8Array({ maxLength: 32 }),
  })
  .map(({ marker, len, prefix, tail }) => {
    const size = marker === 0xdc || marker === 0xde || marker === 0xc5 || marker === 0xda || marker === 0xc8 ? 2 : 4;
    const l = Buffer.alloc(size);
    if (size === 2) l.writeUInt16BE(len & 0xffff);
    else l.writeUInt32BE(len >>> 0);
    return Buffer.concat([Buffer.from(prefix), Buffer.from([marker]), l, tail]);
  });

/** Arrays or maps nested far deeper than a head may be (up to ~100,000 levels). */
const deepNesting = fc
  .record({ depth: fc.oneof(fc.integer({ min: 15, max: 40 }), fc.integer({ min: 1000, max: 100_000 })), kind: fc.constantFrom('array', 'map', 'mixed'), inFrame: fc.boolean() })
  .map(({ depth, kind, inFrame }) => {
    const parts: Buffer[] = [];
    for (let i = 0; i < depth; i++) {
      const useMap = kind === 'map' || (kind === 'mixed' && i % 2 === 1);
      parts.push(useMap ? Buffer.from([0x81, 0xa1, 0x61]) : Buffer.from([0x91]));
    }
    const nested = Buffer.concat([...parts, Buffer.from([0xc0])]);
    // In a frame: the head of an OPEN from the agent (or REPLY), under key "x".
    return inFrame ? Buffer.concat([Buffer.from([0x95, 0x03, 0x01, 0x81, 0xa1, 0x78]), nested, Buffer.from([0xc0, 0xc2])]) : nested;
  });

/** Extension types and msgpackr's own extensions (records, structured clone ids, timestamps). */
const extensions = fc
  .record({
    body: fc.constantFrom<number[]>(
      [0xd4, 0x00, 0x00],
      [0xd6, 0xff, 0, 0, 0, 1],
      [0xd4, 0x72, 0x00],
      [0xd4, 0x69, 0x00],
      [0xd4, 0x70, 0x00],
      [0xc7, 0x00, 0x05],
      [0xd5, 0x65, 0x00, 0x01],
      [0xd8, 0x01, ...new Array<number>(16).fill(0)],
    ),
    where: fc.constantFrom('alone', 'head', 'data', 'id'),
  })
  .map(({ body, where }) => {
    const ext = Buffer.from(body);
    switch (where) {
      case 'alone':
        return ext;
      case 'head':
        return Buffer.concat([Buffer.from([0x95, 0x03, 0x01, 0x81, 0xa1, 0x78]), ext, Buffer.from([0xc0, 0xc2])]);
      case 'data':
        return Buffer.concat([Buffer.from([0x94, 0x05, 0x01]), ext, Buffer.from([0xc2])]);
      default:
        return Buffer.concat([Buffer.from([0x94, 0x05]), ext, Buffer.from([0xc4, 0x00, 0xc2])]);
    }
  });

/** Arrays whose first element is a known kind but whose other elements are anything at all. */
const wrongTypes = fc
  .record({ kind: fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 10 }) }, { weight: 1, arbitrary: wireValue }), rest: fc.array(wireValue, { maxLength: 6 }) })
  .map(({ kind, rest }) => packAny([kind, ...rest]));

/** Well-formed envelopes of kinds nobody knows. */
const unknownKind = fc
  .record({ kind: fc.oneof(fc.constant(0), fc.integer({ min: 11, max: 300 }), fc.integer({ min: -100, max: -1 }), fc.constant(2 ** 31), fc.constant(1.5)), rest: fc.array(wireValue, { maxLength: 4 }) })
  .map(({ kind, rest }) => packAny([kind, ...rest]));

/** A message for a tunnel session: any of the above, or random bytes. */
export const hostileMessage: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 6, arbitrary: validFrame.map((f) => encodeFrame(f)) },
  { weight: 5, arbitrary: fc.tuple(validFrame, fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([f, ms]) => mutate(encodeFrame(f), ms)) },
  { weight: 3, arbitrary: wrongTypes },
  { weight: 2, arbitrary: hugeLength },
  { weight: 2, arbitrary: deepNesting },
  { weight: 2, arbitrary: extensions },
  { weight: 2, arbitrary: unknownKind },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 256 }) },
  { weight: 1, arbitrary: fc.constant(new Uint8Array(0)) },
);

/** How a case begins: a valid HELLO (or WELCOME), a random handshake, or straight into hostile messages. */
export type Opening = { kind: 'valid' } | { kind: 'random'; body: Head } | { kind: 'none' };

export const opening: fc.Arbitrary<Opening> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Opening>({ kind: 'valid' }) },
  { weight: 2, arbitrary: handshakeBody.map((body): Opening => ({ kind: 'random', body })) },
  { weight: 1, arbitrary: fc.constant<Opening>({ kind: 'none' }) },
);

export interface RawCase {
  opening: Opening;
  messages: Uint8Array[];
  /** Also send one message just above the receiver's frame limit (rarely: it is slow). */
  oversized: boolean;
}

export const rawCase: fc.Arbitrary<RawCase> = fc.record({
  opening,
  messages: fc.array(hostileMessage, { minLength: 1, maxLength: 8 }),
  oversized: fc.oneof({ weight: 30, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

// ---- HTTP heads -------------------------------------------------------------------------------

const tokenChars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const httpToken = fc.string({ unit: fc.constantFrom(...tokenChars.split('')), minLength: 1, maxLength: 20 });

/** Paths a hostile kas (or a confused one) might send: traversal, encoded separators, absolute URLs, authority tricks. */
export const trickyPath: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '/api/v1/namespaces',
    '/../../etc/passwd',
    '/api/../../../x',
    '/api/%2e%2e/%2e%2e/x',
    '/api/%2E%2E%2f%2E%2E%2fx',
    '/api/v1/namespaces/%2f%2fevil',
    '/./api',
    '/api/.',
    '//evil.example/x',
    '/\\evil.example/x',
    '/@evil.example/x',
    'http://127.0.0.1:1/evil',
    'https://evil.example/',
    '*',
    'evil.example:443',
    '/api?x=1#frag',
    '/api/v1/pods?watch=true&x=%00',
    '/%00',
    '/\u0000',
    '/a b',
    '/é',
    '',
  ),
  fc.string({ maxLength: 60 }).map((s) => `/${s}`),
  fc.string({ maxLength: 60 }),
);

const headerName = fc.oneof(
  { weight: 4, arbitrary: httpToken },
  { weight: 2, arbitrary: fc.constantFrom('Host', 'Authorization', 'Connection', 'Upgrade', 'Transfer-Encoding', 'Content-Length', 'Impersonate-User', 'Impersonate-Group', 'Proxy-Authorization', 'Te', 'Keep-Alive', 'Expect') },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
);
const headerValue = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 60 }) },
  { weight: 2, arbitrary: fc.constantFrom('evil.example', 'Upgrade', 'upgrade, keep-alive', 'chunked', '-1', '99999999999999999999', '0', 'websocket', 'SPDY/3.1', 'close, Host', '100-continue', 'a\r\nX-Injected: 1', 'a\u0000b') },
);

/** Request heads of `http` streams: mostly shaped like kas's, with hostile values. */
export const requestHead: fc.Arbitrary<Head> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({
        method: fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'CONNECT', 'TRACE', 'get'), httpToken, fc.string({ maxLength: 40 })),
        path: trickyPath,
        headers: fc.oneof({ weight: 5, arbitrary: fc.array(fc.tuple(headerName, headerValue), { maxLength: 8 }) }, { weight: 1, arbitrary: wireValue }),
        impersonate: fc.oneof(fc.constant(undefined), wireValue, fc.record({ username: fc.oneof(fc.string({ maxLength: 20 }), wireValue), groups: fc.oneof(fc.array(fc.string({ maxLength: 20 }), { maxLength: 3 }), wireValue), extra: fc.oneof(fc.dictionary(keyString, fc.array(fc.string({ maxLength: 10 }), { maxLength: 2 }), { maxKeys: 2 }), wireValue) })),
      })
      .map(({ method, path, headers, impersonate }): Head => {
        const h: Head = { t: 'http', method, path, headers: headers as WireValue };
        if (impersonate !== undefined) h.impersonate = impersonate as WireValue;
        return h;
      }),
  },
  { weight: 1, arbitrary: anyHead.map((h) => ({ ...h, t: 'http' })) },
  { weight: 1, arbitrary: anyHead },
);

/** Response heads (REPLY of an `http` stream): statuses in and out of range, headers of every shape. */
export const responseHead: fc.Arbitrary<Head> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({
        status: fc.oneof(fc.constantFrom(100, 101, 200, 204, 304, 404, 500, 599), fc.integer({ min: -1000, max: 1000 }), fc.double(), wireValue),
        headers: fc.oneof({ weight: 5, arbitrary: fc.array(fc.tuple(headerName, headerValue), { maxLength: 8 }) }, { weight: 1, arbitrary: wireValue }),
      })
      .map((h): Head => ({ status: h.status as WireValue, headers: h.headers as WireValue })),
  },
  { weight: 1, arbitrary: anyHead },
);

/** What a hostile agent does on a stream kas opened: a REPLY (maybe), then DATA, RESET or more REPLYs. */
export interface ReplyCase {
  head: Head;
  data: Uint8Array | null;
  fin: boolean;
  after: Array<{ kind: 'data'; data: Uint8Array; fin: boolean } | { kind: 'reply'; head: Head } | { kind: 'reset'; code: number } | { kind: 'raw'; message: Uint8Array }>;
}

export const replyCase: fc.Arbitrary<ReplyCase> = fc.record({
  head: responseHead,
  data: fc.option(fc.uint8Array({ maxLength: 1024 })),
  fin: fc.boolean(),
  after: fc.array(
    fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('data' as const), data: fc.uint8Array({ maxLength: 4096 }), fin: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('reply' as const), head: responseHead }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('reset' as const), code: fc.integer({ min: 0, max: 30 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('raw' as const), message: hostileMessage }) },
    ),
    { maxLength: 5 },
  ),
});

/** What a hostile kas does to agentk: open streams with these heads, data and fin. */
export interface OpenCase {
  streams: Array<{ head: Head; data: Uint8Array | null; fin: boolean; resetAfterMs: number | null }>;
}

export const openCase: fc.Arbitrary<OpenCase> = fc.record({
  streams: fc.array(
    fc.record({
      head: fc.oneof({ weight: 5, arbitrary: requestHead }, { weight: 1, arbitrary: anyHead.map((h) => ({ ...h, t: 'agent_config' })) }),
      data: fc.option(fc.uint8Array({ maxLength: 2048 })),
      fin: fc.boolean(),
      resetAfterMs: fc.option(fc.integer({ min: 0, max: 50 })),
    }),
    { minLength: 1, maxLength: 6 },
  ),
});

/** One value of an arbitrary for a seed: a case is reproduced from (arbitrary, seed). */
export function sampleOne<T>(arb: fc.Arbitrary<T>, seed: number): T {
  return fc.sample(arb, { seed, numRuns: 1 })[0]!;
}

/** A short printable summary of messages, for failure reports. */
export function hexSummary(messages: readonly Uint8Array[], max = 96): string {
  return messages.map((m) => `${Buffer.from(m.subarray(0, max)).toString('hex')}${m.byteLength > max ? `…(${m.byteLength} B)` : ''}`).join(' | ');
}
