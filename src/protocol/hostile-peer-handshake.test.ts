/**
 * The handshake of a session facing a peer that breaks the rules (testing/hostile-peer-harness.ts
 * drives the far end by hand). Every mistake must end in a coded close, never a crash or a hang.
 */
import { CLOSE_CODE_BASE, TunnelError, wireOf } from './errors.js';
import { FrameKind, encodeRawData, type Frame, type Head } from './frames.js';
import { DEFAULT_LIMITS } from './limits.js';
import { MAX_PROTOCOL_VERSION, PROTOCOL_VERSION, type SessionOptions } from './session.js';
import { closeHarnesses, expectSessionClosedWith, handshakeBody, setup, type Harness } from './testing/hostile-peer-harness.js';

afterEach(closeHarnesses);

describe('handshake: a server session facing a bad HELLO', () => {
  test('a HELLO with another protocol version closes the session with UNSUPPORTED_VERSION (close code 4002)', async () => {
    const h = setup('server');
    h.peer.send({ kind: FrameKind.HELLO, body: { ...handshakeBody(), v: PROTOCOL_VERSION + 1 } });
    await expectSessionClosedWith(h, 'UNSUPPORTED_VERSION');
    expect(CLOSE_CODE_BASE + wireOf('UNSUPPORTED_VERSION')).toBe(4002);
    await expect(h.session.ready).rejects.toMatchObject({ code: 'UNSUPPORTED_VERSION' });
  });

  test('a HELLO with a vmax that is not an integer closes the session with PROTOCOL_ERROR', async () => {
    const h = setup('server');
    h.peer.send({ kind: FrameKind.HELLO, body: { ...handshakeBody(), vmax: 'two' } });
    await expectSessionClosedWith(h, 'PROTOCOL_ERROR');
  });

  test('a version 1 HELLO gets version 1: a raw DATA frame afterwards is a MALFORMED_FRAME', async () => {
    const h = setup('server');
    h.peer.send({ kind: FrameKind.HELLO, body: handshakeBody() });
    await h.peer.frame((f) => f.kind === FrameKind.WELCOME && f.body.v === 1, 'a version 1 WELCOME');
    h.peer.sendRaw(encodeRawData(1, Buffer.from('hi'), false));
    await expectSessionClosedWith(h, 'MALFORMED_FRAME');
  });

  test('a HELLO offering vmax above ours gets our highest version; a raw DATA frame with stray flags is then a MALFORMED_FRAME', async () => {
    const h = setup('server');
    h.peer.send({ kind: FrameKind.HELLO, body: { ...handshakeBody(), vmax: 7 } });
    await h.peer.frame((f) => f.kind === FrameKind.WELCOME && f.body.v === MAX_PROTOCOL_VERSION, 'a WELCOME choosing our highest version');
    const bad = encodeRawData(1, Buffer.from('hi'), false);
    bad[1] = 0x02;
    h.peer.sendRaw(bad);
    await expectSessionClosedWith(h, 'MALFORMED_FRAME');
  });

  test('a HELLO without a version closes the session with UNSUPPORTED_VERSION', async () => {
    const h = setup('server');
    h.peer.send({ kind: FrameKind.HELLO, body: { limits: { ...DEFAULT_LIMITS } } });
    await expectSessionClosedWith(h, 'UNSUPPORTED_VERSION');
  });

  test.each<[string, Frame]>([
    ['PING', { kind: FrameKind.PING, nonce: 1 }],
    ['OPEN', { kind: FrameKind.OPEN, id: 1, head: {}, data: null, fin: false }],
    ['WELCOME (the server\'s own frame)', { kind: FrameKind.WELCOME, body: handshakeBody() }],
  ])('a first frame that is %s instead of HELLO closes the session with PROTOCOL_ERROR', async (_name, frame) => {
    const h = setup('server');
    h.peer.send(frame);
    await expectSessionClosedWith(h, 'PROTOCOL_ERROR');
  });

  test('a first frame that is not msgpack closes the session with MALFORMED_FRAME', async () => {
    const h = setup('server');
    h.peer.sendRaw(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await expectSessionClosedWith(h, 'MALFORMED_FRAME');
  });

  test('a first frame of an unknown kind closes the session with UNKNOWN_FRAME_KIND', async () => {
    const h = setup('server');
    h.peer.sendRaw(Buffer.from('920b00', 'hex'));
    await expectSessionClosedWith(h, 'UNKNOWN_FRAME_KIND');
  });

  test('a first frame larger than maxHeaderSize closes the session with FRAME_TOO_LARGE before it is decoded', async () => {
    const h = setup('server', { limits: { maxHeaderSize: 1024 } });
    h.peer.send({ kind: FrameKind.HELLO, body: { ...handshakeBody(), padding: 'x'.repeat(2000) } });
    await expectSessionClosedWith(h, 'FRAME_TOO_LARGE');
  });

  test('no HELLO within handshakeTimeoutMs closes the session with HANDSHAKE_TIMEOUT', async () => {
    const h = setup('server', { tuning: { handshakeTimeoutMs: 100 } });
    await expectSessionClosedWith(h, 'HANDSHAKE_TIMEOUT');
  });

  test.each<[string, unknown]>([
    ['missing', undefined],
    ['not a map', [1, 2, 3]],
    ['with maxFrameSize below the minimum', { ...DEFAULT_LIMITS, maxFrameSize: 100 }],
    ['with maxFrameSize above the maximum', { ...DEFAULT_LIMITS, maxFrameSize: 2 ** 30 }],
    ['with zero maxStreams', { ...DEFAULT_LIMITS, maxStreams: 0 }],
    ['with maxHeaderSize larger than a frame', { ...DEFAULT_LIMITS, maxFrameSize: 4096, maxHeaderSize: 8192 }],
    ['with initialWindow as a string', { ...DEFAULT_LIMITS, initialWindow: '262144' }],
    ['with a fractional initialWindow', { ...DEFAULT_LIMITS, initialWindow: 4096.5 }],
    ['without initialWindow', { maxFrameSize: 4096, maxStreams: 1, maxHeaderSize: 1024 }],
  ])('HELLO limits %s close the session with PROTOCOL_ERROR', async (_name, limits) => {
    const h = setup('server');
    const body: Head = { v: PROTOCOL_VERSION };
    if (limits !== undefined) body.limits = limits as Head;
    h.peer.send({ kind: FrameKind.HELLO, body });
    await expectSessionClosedWith(h, 'PROTOCOL_ERROR');
  });

  test('acceptHello refusing the agent closes the session with the refusal\'s code, and sends no WELCOME', async () => {
    const seen: Head[] = [];
    const h = setup('server', {
      acceptHello: (hello) => {
        seen.push(hello);
        return new TunnelError('AUTH_REVOKED', 'agent token revoked');
      },
    });
    h.peer.send({ kind: FrameKind.HELLO, body: { ...handshakeBody(), agentVersion: '1.2.3' } });
    await expectSessionClosedWith(h, 'AUTH_REVOKED');
    expect(seen).toEqual([expect.objectContaining({ agentVersion: '1.2.3', v: PROTOCOL_VERSION })]);
    expect(h.peer.frames.filter((f) => f.kind === FrameKind.WELCOME)).toEqual([]);
  });

  test('acceptHello refusing an agentk that is too old closes with the code it chose (UNSUPPORTED_VERSION)', async () => {
    const h = setup('server', { acceptHello: () => new TunnelError('UNSUPPORTED_VERSION', 'agentk too old') });
    h.peer.send({ kind: FrameKind.HELLO, body: handshakeBody() });
    await expectSessionClosedWith(h, 'UNSUPPORTED_VERSION');
  });
});

describe('handshake: a client session facing a bad WELCOME', () => {
  async function clientAwaitingWelcome(options: Partial<SessionOptions> = {}): Promise<Harness> {
    const h = setup('client', options);
    await h.peer.frame((f) => f.kind === FrameKind.HELLO, 'the HELLO');
    return h;
  }

  test('the client sends HELLO with the protocol version and its limits first', async () => {
    const h = await clientAwaitingWelcome({ hello: { agentVersion: '9.9.9' }, limits: { maxStreams: 5 } });
    expect(h.peer.frames[0]).toEqual({ kind: FrameKind.HELLO, body: { agentVersion: '9.9.9', v: PROTOCOL_VERSION, vmax: MAX_PROTOCOL_VERSION, limits: { ...DEFAULT_LIMITS, maxStreams: 5 } } });
  });

  test('a WELCOME choosing a version above what the HELLO offered closes the session with UNSUPPORTED_VERSION', async () => {
    const h = await clientAwaitingWelcome({ maxVersion: 1 });
    expect(h.peer.frames[0]).toMatchObject({ kind: FrameKind.HELLO, body: { v: 1 } });
    expect((h.peer.frames[0] as { body: Record<string, unknown> }).body.vmax).toBeUndefined();
    h.peer.send({ kind: FrameKind.WELCOME, body: { ...handshakeBody(), v: 2 } });
    await expectSessionClosedWith(h, 'UNSUPPORTED_VERSION');
  });

  test('a WELCOME with another protocol version closes the session with UNSUPPORTED_VERSION (close code 4002)', async () => {
    const h = await clientAwaitingWelcome();
    h.peer.send({ kind: FrameKind.WELCOME, body: { ...handshakeBody(), v: 99 } });
    await expectSessionClosedWith(h, 'UNSUPPORTED_VERSION');
  });

  test('a HELLO instead of WELCOME closes the session with PROTOCOL_ERROR', async () => {
    const h = await clientAwaitingWelcome();
    h.peer.send({ kind: FrameKind.HELLO, body: handshakeBody() });
    await expectSessionClosedWith(h, 'PROTOCOL_ERROR');
  });

  test('a malformed first frame closes the session with MALFORMED_FRAME', async () => {
    const h = await clientAwaitingWelcome();
    h.peer.sendRaw(Buffer.from('9202', 'hex'));
    await expectSessionClosedWith(h, 'MALFORMED_FRAME');
  });

  test('a WELCOME larger than maxHeaderSize closes the session with FRAME_TOO_LARGE', async () => {
    const h = await clientAwaitingWelcome({ limits: { maxHeaderSize: 512 } });
    h.peer.send({ kind: FrameKind.WELCOME, body: { ...handshakeBody(), padding: 'x'.repeat(1000) } });
    await expectSessionClosedWith(h, 'FRAME_TOO_LARGE');
  });

  test('a WELCOME with bad limits closes the session with PROTOCOL_ERROR', async () => {
    const h = await clientAwaitingWelcome();
    h.peer.send({ kind: FrameKind.WELCOME, body: { v: PROTOCOL_VERSION, limits: { ...DEFAULT_LIMITS, maxStreams: -1 } } });
    await expectSessionClosedWith(h, 'PROTOCOL_ERROR');
  });

  test('no WELCOME within handshakeTimeoutMs closes the session with HANDSHAKE_TIMEOUT', async () => {
    const h = await clientAwaitingWelcome({ tuning: { handshakeTimeoutMs: 100 } });
    await expectSessionClosedWith(h, 'HANDSHAKE_TIMEOUT');
  });

  test('streams opened before the handshake fail with the handshake\'s error code', async () => {
    const h = await clientAwaitingWelcome();
    const early = h.session.openStream({ path: '/early' });
    const failed = new Promise<unknown>((resolve) => early.once('error', resolve));
    h.peer.send({ kind: FrameKind.WELCOME, body: { ...handshakeBody(), v: 99 } });
    await expectSessionClosedWith(h, 'UNSUPPORTED_VERSION');
    expect(await failed).toMatchObject({ code: 'UNSUPPORTED_VERSION' });
  });
});
