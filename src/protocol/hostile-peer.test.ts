/**
 * A session facing a peer that breaks the rules after the handshake. The session runs on one end of
 * an in-memory pair; the other end is driven by hand, frame by frame (testing/hostile-peer-harness.ts).
 * Every mistake of the peer must end in a coded RESET of one stream (the session goes on) or a coded
 * close of the session, never a crash, a hang or a silent acceptance.
 */
import { jest } from '@jest/globals';
import { wireOf } from './errors.js';
import { FrameKind, encodeFrame, type Frame } from './frames.js';
import { BufferBudget } from './flow.js';
import type { SessionRole } from './session.js';
import { readAll } from '../../test/support/streams.js';
import { closeHarnesses, connected, expectAStreamStillWorks, expectSessionClosedWith, expectStreamReset, handshakeBody, openStreamWithPeer, peerData, setup } from './testing/hostile-peer-harness.js';

afterEach(closeHarnesses);

describe.each<SessionRole>(['server', 'client'])('after the handshake, a %s session facing a hostile peer', (role) => {
  test('an unknown frame kind closes the session with UNKNOWN_FRAME_KIND', async () => {
    const h = await connected(role);
    h.peer.sendRaw(Buffer.from('930c0102', 'hex'));
    await expectSessionClosedWith(h, 'UNKNOWN_FRAME_KIND');
  });

  test('a malformed frame closes the session with MALFORMED_FRAME', async () => {
    const h = await connected(role);
    h.peer.sendRaw(Buffer.from('940501', 'hex'));
    await expectSessionClosedWith(h, 'MALFORMED_FRAME');
  });

  test('a frame above maxFrameSize closes the session with FRAME_TOO_LARGE', async () => {
    const h = await connected(role, { limits: { maxFrameSize: 64 * 1024, maxHeaderSize: 1024 } });
    const { id } = await openStreamWithPeer(h);
    const frame = encodeFrame(peerData(id, new Uint8Array(64 * 1024)));
    expect(frame.byteLength).toBeGreaterThan(64 * 1024);
    h.peer.sendRaw(frame);
    await expectSessionClosedWith(h, 'FRAME_TOO_LARGE');
  });

  test('a second handshake frame closes the session with PROTOCOL_ERROR', async () => {
    const h = await connected(role);
    h.peer.send({ kind: role === 'server' ? FrameKind.HELLO : FrameKind.WELCOME, body: handshakeBody() });
    await expectSessionClosedWith(h, 'PROTOCOL_ERROR');
  });

  test('an OPEN with this session\'s own id parity closes the session with PROTOCOL_ERROR', async () => {
    const h = await connected(role);
    const wrongParity = role === 'server' ? 2 : 1;
    h.peer.send({ kind: FrameKind.OPEN, id: wrongParity, head: {}, data: null, fin: false });
    await expectSessionClosedWith(h, 'PROTOCOL_ERROR');
  });

  test('an OPEN that reuses a stream id closes the session with PROTOCOL_ERROR', async () => {
    const h = await connected(role);
    const id = h.nextPeerId();
    h.peer.send({ kind: FrameKind.OPEN, id, head: {}, data: null, fin: false });
    await h.peer.roundTrip();
    h.peer.send({ kind: FrameKind.OPEN, id, head: {}, data: null, fin: false });
    await expectSessionClosedWith(h, 'PROTOCOL_ERROR');
  });

  test('an OPEN with an id lower than one already used closes the session with PROTOCOL_ERROR', async () => {
    const h = await connected(role);
    const first = h.nextPeerId();
    const second = h.nextPeerId();
    h.peer.send({ kind: FrameKind.OPEN, id: second, head: {}, data: null, fin: false });
    h.peer.send({ kind: FrameKind.OPEN, id: first, head: {}, data: null, fin: false });
    await expectSessionClosedWith(h, 'PROTOCOL_ERROR');
  });

  test.each<[string, (id: number) => Frame]>([
    ['DATA', (id) => ({ kind: FrameKind.DATA, id, data: new Uint8Array([1]), fin: false })],
    ['WINDOW', (id) => ({ kind: FrameKind.WINDOW, id, increment: 100 })],
    ['RESET', (id) => ({ kind: FrameKind.RESET, id, code: 11, message: 'x' })],
    ['REPLY', (id) => ({ kind: FrameKind.REPLY, id, head: {}, data: null, fin: false })],
  ])('%s for a stream id the peer never opened closes the session with PROTOCOL_ERROR', async (_name, make) => {
    const h = await connected(role);
    h.peer.send(make(h.nextPeerId()));
    await expectSessionClosedWith(h, 'PROTOCOL_ERROR');
  });

  test('DATA for an id of this session\'s parity that it never allocated closes the session with PROTOCOL_ERROR', async () => {
    const h = await connected(role);
    const ownParity = role === 'server' ? 200 : 201;
    h.peer.send(peerData(ownParity, new Uint8Array([1])));
    await expectSessionClosedWith(h, 'PROTOCOL_ERROR');
  });

  test('DATA beyond the granted credit resets only that stream with FLOW_CONTROL; another stream still works end to end', async () => {
    const initialWindow = 4096;
    const h = await connected(role, { limits: { initialWindow } });
    const { id, stream } = await openStreamWithPeer(h);
    const failure = new Promise<unknown>((resolve) => stream.once('error', resolve));
    h.peer.send(peerData(id, new Uint8Array(initialWindow + 1)));
    await expectStreamReset(h, id, 'FLOW_CONTROL');
    expect(await failure).toMatchObject({ code: 'FLOW_CONTROL', remote: false });
    expect(h.session.bufferedBytes).toBe(0);
    await expectAStreamStillWorks(h);
  });

  test('DATA that overruns the credit over several frames resets the stream with FLOW_CONTROL', async () => {
    const initialWindow = 4096;
    const h = await connected(role, { limits: { initialWindow } });
    const { id, stream } = await openStreamWithPeer(h);
    stream.pause();
    h.peer.send(peerData(id, new Uint8Array(3000)));
    h.peer.send(peerData(id, new Uint8Array(1096)));
    await h.peer.roundTrip();
    expect(h.peer.frames.some((f) => f.kind === FrameKind.RESET)).toBe(false);
    h.peer.send(peerData(id, new Uint8Array(1)));
    await expectStreamReset(h, id, 'FLOW_CONTROL');
    expect(h.session.bufferedBytes).toBe(0);
    await expectAStreamStillWorks(h);
  });

  test('a WINDOW that would raise the credit beyond 2^31-1 resets the stream with FLOW_CONTROL', async () => {
    const h = await connected(role);
    const { id } = await openStreamWithPeer(h);
    h.peer.send({ kind: FrameKind.WINDOW, id, increment: 0x7fffffff });
    await expectStreamReset(h, id, 'FLOW_CONTROL');
    await expectAStreamStillWorks(h);
  });

  test('DATA after the peer ended its direction resets the stream with STREAM_CLOSED', async () => {
    const h = await connected(role);
    const { id } = await openStreamWithPeer(h);
    h.peer.send(peerData(id, new Uint8Array([1]), true));
    await h.peer.roundTrip();
    h.peer.send(peerData(id, new Uint8Array([2])));
    await expectStreamReset(h, id, 'STREAM_CLOSED');
    await expectAStreamStillWorks(h);
  });

  test('frames for a stream the session reset are ignored: no close, no reply', async () => {
    const h = await connected(role);
    const { id, stream } = await openStreamWithPeer(h);
    stream.reset('CANCELLED', 'user went away');
    await h.peer.resetOf(id);
    // The peer had these in flight before it saw the RESET.
    h.peer.send(peerData(id, new Uint8Array(100)));
    h.peer.send({ kind: FrameKind.WINDOW, id, increment: 1000 });
    h.peer.send(peerData(id, new Uint8Array(0), true));
    h.peer.send({ kind: FrameKind.RESET, id, code: wireOf('CANCELLED'), message: 'crossed' });
    await h.peer.roundTrip();
    expect(h.session.state).toBe('open');
    expect(h.peer.frames.filter((f) => f.kind === FrameKind.RESET)).toHaveLength(1);
    expect(h.session.streamCount).toBe(0);
    expect(h.session.bufferedBytes).toBe(0);
    await expectAStreamStillWorks(h);
  });

  test('frames for a stream the peer itself reset are ignored: no close', async () => {
    const h = await connected(role);
    const { id, stream } = await openStreamWithPeer(h);
    const failure = new Promise<unknown>((resolve) => stream.once('error', resolve));
    h.peer.send({ kind: FrameKind.RESET, id, code: wireOf('UPSTREAM_ERROR'), message: 'refused' });
    expect(await failure).toMatchObject({ code: 'UPSTREAM_ERROR', remote: true });
    h.peer.send(peerData(id, new Uint8Array(10)));
    h.peer.send({ kind: FrameKind.WINDOW, id, increment: 10 });
    await h.peer.roundTrip();
    expect(h.session.state).toBe('open');
    expect(h.peer.frames.filter((f) => f.kind === FrameKind.RESET)).toEqual([]);
    await expectAStreamStillWorks(h);
  });

  test('a flood of PINGs, one message each, is answered at most once per ping and the session goes on', async () => {
    const h = await connected(role);
    const first = 5_000_000;
    const count = 10_000;
    for (let i = 0; i < count; i++) h.peer.send({ kind: FrameKind.PING, nonce: first + i });
    await h.peer.frame((f) => f.kind === FrameKind.PONG && f.nonce === first + count - 1, 'the PONG of the last ping');
    const pongs = h.peer.frames.filter((f) => f.kind === FrameKind.PONG && f.nonce >= first);
    expect(pongs.length).toBeLessThanOrEqual(count);
    await expectAStreamStillWorks(h);
  });

  test('a burst of PINGs arriving at once is answered with one PONG for the latest, not one per ping', async () => {
    const h = await connected(role);
    const first = 7_000_000;
    const count = 10_000;
    const sentBefore = h.wire.sent.length;
    h.wire.inject(...Array.from({ length: count }, (_, i) => encodeFrame({ kind: FrameKind.PING, nonce: first + i })));
    await h.peer.roundTrip();
    const pongs = h.wire.sent.slice(sentBefore).filter((f) => f.kind === FrameKind.PONG && f.nonce >= first);
    expect(pongs.length).toBeGreaterThanOrEqual(1);
    expect(pongs.length).toBeLessThanOrEqual(2);
    expect(pongs[pongs.length - 1]).toEqual({ kind: FrameKind.PONG, nonce: first + count - 1 });
    expect(h.session.state).toBe('open');
  });

  test('a RESET from the peer carrying an unknown code fails the stream with UNKNOWN_ERROR, and the session goes on', async () => {
    const h = await connected(role);
    const { id, stream } = await openStreamWithPeer(h);
    const failure = new Promise<unknown>((resolve) => stream.once('error', resolve));
    h.peer.send({ kind: FrameKind.RESET, id, code: 9999, message: 'from the future' });
    expect(await failure).toMatchObject({ code: 'UNKNOWN_ERROR', remote: true });
    await expectAStreamStillWorks(h);
  });
});

describe('after the handshake, a server session facing a hostile agent', () => {
  test('an OPEN head larger than maxHeaderSize is reset with HEADER_TOO_LARGE and the session goes on', async () => {
    const h = await connected('server', { limits: { maxHeaderSize: 1024 } });
    const id = h.nextPeerId();
    h.peer.send({ kind: FrameKind.OPEN, id, head: { padding: 'x'.repeat(2000) }, data: new Uint8Array(10), fin: false });
    await expectStreamReset(h, id, 'HEADER_TOO_LARGE');
    expect(h.accepted).toEqual([]);
    // Its later frames are ignored, like those of any reset stream.
    h.peer.send(peerData(id, new Uint8Array(5)));
    await h.peer.roundTrip();
    expect(h.session.state).toBe('open');
    await expectAStreamStillWorks(h);
  });

  test('OPENs beyond maxStreams are reset with STREAM_LIMIT, and a slot freed by a finished stream can be used again', async () => {
    const h = await connected('server', { limits: { maxStreams: 2 } });
    const ids = [h.nextPeerId(), h.nextPeerId(), h.nextPeerId(), h.nextPeerId()];
    for (const id of ids) h.peer.send({ kind: FrameKind.OPEN, id, head: {}, data: null, fin: false });
    await expectStreamReset(h, ids[2]!, 'STREAM_LIMIT');
    await expectStreamReset(h, ids[3]!, 'STREAM_LIMIT');
    expect(h.accepted.map((s) => s.id)).toEqual([ids[0], ids[1]]);
    expect(h.peer.frames.filter((f) => f.kind === FrameKind.RESET).map((f) => (f as { id: number }).id)).toEqual([ids[2], ids[3]]);
    // Finish the first stream cleanly in both directions: its slot is free again.
    h.accepted[0]!.end();
    await h.peer.frame((f) => f.kind === FrameKind.REPLY && f.id === ids[0] && f.fin, 'the END of the first stream');
    h.peer.send(peerData(ids[0]!, new Uint8Array(0), true));
    await h.peer.roundTrip();
    await expectAStreamStillWorks(h);
  });

  test('an OPEN that carries more data than the initial window is reset with FLOW_CONTROL and never reaches the application', async () => {
    const h = await connected('server', { limits: { initialWindow: 4096 } });
    const id = h.nextPeerId();
    h.peer.send({ kind: FrameKind.OPEN, id, head: {}, data: new Uint8Array(4097), fin: false });
    await expectStreamReset(h, id, 'FLOW_CONTROL');
    expect(h.accepted).toEqual([]);
    expect(h.session.bufferedBytes).toBe(0);
    await expectAStreamStillWorks(h);
  });

  test('an agent filling the session\'s receive buffers gets BUFFER_LIMIT on the stream that overflows; the session goes on', async () => {
    // Two streams' worth of credit, but room for only one and a half in the session's buffers.
    const h = await connected('server', { limits: { initialWindow: 8192 }, tuning: { maxSessionBuffer: 12_000 } });
    const first = h.nextPeerId();
    const second = h.nextPeerId();
    // Nobody reads these streams: their bytes stay buffered.
    h.peer.send({ kind: FrameKind.OPEN, id: first, head: {}, data: new Uint8Array(8000), fin: false });
    h.peer.send({ kind: FrameKind.OPEN, id: second, head: {}, data: null, fin: false });
    h.peer.send(peerData(second, new Uint8Array(4000)));
    h.peer.send(peerData(second, new Uint8Array(1)));
    await expectStreamReset(h, second, 'BUFFER_LIMIT');
    expect(h.session.bufferedBytes).toBe(8000);
    expect(h.accepted.map((s) => s.id)).toEqual([first, second]);
    expect(h.accepted[1]!.errored).toMatchObject({ code: 'BUFFER_LIMIT' });
    // Reading the first stream frees its bytes.
    const body = readAll(h.accepted[0]!);
    h.peer.send(peerData(first, new Uint8Array(0), true));
    expect((await body).length).toBe(8000);
    expect(h.session.bufferedBytes).toBe(0);
    await expectAStreamStillWorks(h);
  });

  test('the process-wide budget caps two sessions together: the second session\'s overflow is reset with BUFFER_LIMIT', async () => {
    const processBudget = new BufferBudget(10_000);
    const a = await connected('server', { processBudget, limits: { initialWindow: 8192 } });
    const b = await connected('server', { processBudget, limits: { initialWindow: 8192 } });
    const idA = a.nextPeerId();
    a.peer.send({ kind: FrameKind.OPEN, id: idA, head: {}, data: new Uint8Array(8000), fin: false });
    await a.peer.roundTrip();
    const idB = b.nextPeerId();
    b.peer.send({ kind: FrameKind.OPEN, id: idB, head: {}, data: new Uint8Array(3000), fin: false });
    await expectStreamReset(b, idB, 'BUFFER_LIMIT');
    expect(processBudget.used).toBe(8000);
    a.accepted[0]!.destroy();
    expect(processBudget.used).toBe(0);
    await expectAStreamStillWorks(b);
  });

  test('a REPLY on a stream the agent opened itself is reset with PROTOCOL_ERROR', async () => {
    const h = await connected('server');
    const { id } = await openStreamWithPeer(h);
    h.peer.send({ kind: FrameKind.REPLY, id, head: {}, data: null, fin: false });
    await expectStreamReset(h, id, 'PROTOCOL_ERROR');
  });

  test('streams opened without a \'stream\' listener are refused with STREAM_REFUSED', async () => {
    const h = setup('server');
    h.peer.send({ kind: FrameKind.HELLO, body: handshakeBody() });
    await h.session.ready;
    h.peer.send({ kind: FrameKind.OPEN, id: 1, head: {}, data: null, fin: false });
    await expectStreamReset(h, 1, 'STREAM_REFUSED');
  });
});

describe('after the handshake, a client session facing a hostile server', () => {
  test('DATA before the REPLY on a stream the client opened resets it with PROTOCOL_ERROR', async () => {
    const h = await connected('client');
    const s = h.session.openStream({});
    await h.peer.frame((f) => f.kind === FrameKind.OPEN && f.id === s.id, 'the OPEN');
    h.peer.send(peerData(s.id, new Uint8Array(1)));
    await expectStreamReset(h, s.id, 'PROTOCOL_ERROR');
  });

  test('a second REPLY resets the stream with PROTOCOL_ERROR', async () => {
    const h = await connected('client');
    const { id } = await openStreamWithPeer(h);
    h.peer.send({ kind: FrameKind.REPLY, id, head: {}, data: null, fin: false });
    await expectStreamReset(h, id, 'PROTOCOL_ERROR');
  });

  test('a REPLY head larger than maxHeaderSize resets the stream with HEADER_TOO_LARGE', async () => {
    const h = await connected('client', { limits: { maxHeaderSize: 1024 } });
    const s = h.session.openStream({});
    await h.peer.frame((f) => f.kind === FrameKind.OPEN && f.id === s.id, 'the OPEN');
    h.peer.send({ kind: FrameKind.REPLY, id: s.id, head: { padding: 'x'.repeat(2000) }, data: null, fin: false });
    await expectStreamReset(h, s.id, 'HEADER_TOO_LARGE');
    await expectAStreamStillWorks(h);
  });

  test('a REPLY carrying more data than the initial window resets the stream with FLOW_CONTROL', async () => {
    const h = await connected('client', { limits: { initialWindow: 4096 } });
    const s = h.session.openStream({});
    await h.peer.frame((f) => f.kind === FrameKind.OPEN && f.id === s.id, 'the OPEN');
    h.peer.send({ kind: FrameKind.REPLY, id: s.id, head: {}, data: new Uint8Array(4097), fin: false });
    await expectStreamReset(h, s.id, 'FLOW_CONTROL');
    expect(h.session.bufferedBytes).toBe(0);
    await expectAStreamStillWorks(h);
  });
});

describe('keepalive', () => {
  test.each<SessionRole>(['server', 'client'])('a %s session whose peer stops answering pings closes with KEEPALIVE_TIMEOUT and fails its open streams', async (role) => {
    const pingIntervalMs = 100;
    const h = await connected(role, { tuning: { pingIntervalMs } }, { answerPings: false });
    const local = h.session.openStream({ path: '/hangs' });
    const failures = [new Promise<unknown>((resolve) => local.once('error', resolve))];
    if (role === 'server') {
      // A stream the peer opened before it went silent fails too.
      const { stream } = await openStreamWithPeer(h);
      failures.push(new Promise<unknown>((resolve) => stream.once('error', resolve)));
    }
    const started = Date.now();
    await expectSessionClosedWith(h, 'KEEPALIVE_TIMEOUT');
    // Nominally within two intervals; generous so a loaded machine does not make this flaky.
    expect(Date.now() - started).toBeLessThan(2000);
    for (const err of await Promise.all(failures)) expect(err).toMatchObject({ code: 'KEEPALIVE_TIMEOUT' });
    expect(h.session.streamCount).toBe(0);
  });

  test.each<SessionRole>(['server', 'client'])('a %s session probes the RTT once, when a stream first consumes half a window, and never for small exchanges', async (role) => {
    const h = await connected(role, { limits: { initialWindow: 256 * 1024 } });
    const pings = () => h.peer.frames.filter((f) => f.kind === FrameKind.PING).length;
    await h.peer.frame((f) => f.kind === FrameKind.PING, 'the first ping');
    await h.peer.roundTrip();
    const { id, stream } = await openStreamWithPeer(h);
    stream.resume();
    h.peer.send(peerData(id, new Uint8Array(1024)));
    await h.peer.roundTrip();
    expect(pings()).toBe(1);
    // Half the window consumed: growth asks for the RTT, and the first sample alone is not trusted.
    for (let i = 0; i < 2; i++) h.peer.send(peerData(id, new Uint8Array(64 * 1024)));
    await h.peer.until(() => pings() === 2, 'an RTT probe');
    await h.peer.roundTrip();
    for (let i = 0; i < 6; i++) h.peer.send(peerData(id, new Uint8Array(64 * 1024)));
    await h.peer.roundTrip();
    expect(pings()).toBe(2);
  });

  test('a peer that answers every ping is never declared dead (timers advanced by hand)', async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'queueMicrotask', 'nextTick'] });
    try {
      const pingIntervalMs = 1000;
      const h = await connected('client', { tuning: { pingIntervalMs } });
      // The first ping goes out with the handshake; let its pong land before the clock moves.
      await h.peer.frame((f) => f.kind === FrameKind.PING, 'the first ping');
      await h.peer.roundTrip();
      for (let i = 0; i < 10; i++) {
        const pings = h.peer.frames.filter((f) => f.kind === FrameKind.PING).length;
        jest.advanceTimersByTime(pingIntervalMs);
        await h.peer.until(() => h.peer.frames.filter((f) => f.kind === FrameKind.PING).length > pings, 'the next ping');
        await h.peer.roundTrip();
      }
      expect(h.session.state).toBe('open');
      expect(h.session.rttMs).not.toBeNull();
    } finally {
      jest.useRealTimers();
    }
  });
});
