/**
 * Behaviour tests of a session pair, written once and run over every transport (in-memory, ws,
 * wss). The transport-specific files only say how to make a connected pair.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { MAX_PROTOCOL_VERSION, Session, type SessionOptions } from '../session.js';
import { TunnelError } from '../errors.js';
import { replyOf, type TunnelStream } from '../stream.js';
import { entryOf } from './stream-internals.js';
import { errorOf, readAll, writeAll } from '../../../test/support/streams.js';
import { waitFor } from '../../../test/support/wait.js';

export interface SessionPair {
  client: Session;
  server: Session;
  cleanup(): Promise<void>;
}

export type PairOptions = { client?: Partial<SessionOptions>; server?: Partial<SessionOptions> };
export type PairFactory = (options?: PairOptions) => Promise<SessionPair>;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** An echo server: every stream the server accepts is replied to with its own bytes. */
function serveEcho(server: Session): void {
  server.on('stream', (s) => {
    s.reply({ status: 200, echo: s.peerHead?.path ?? null });
    s.pipe(s);
  });
}

export function runSessionSuite(name: string, makePair: PairFactory): void {
  describe(`session behaviour over ${name}`, () => {
    let pair: SessionPair | null = null;
    afterEach(async () => {
      await pair?.cleanup();
      pair = null;
    });

    test('handshake: the server sees the agent metadata, the client sees the server limits', async () => {
      pair = await makePair({
        client: { hello: { agentVersion: '1.2.3', podName: 'agentk-0', features: ['http'] } },
        server: { limits: { maxStreams: 77 }, welcome: { sessionId: 'abc' } },
      });
      await Promise.all([pair.client.ready, pair.server.ready]);
      // HELLO keeps the base version in `v` and offers version 2 in `vmax`; WELCOME's `v` is the choice.
      expect(pair.server.peerInfo).toMatchObject({ agentVersion: '1.2.3', podName: 'agentk-0', features: ['http'], v: 1, vmax: MAX_PROTOCOL_VERSION });
      expect(pair.client.peerInfo).toMatchObject({ sessionId: 'abc', v: MAX_PROTOCOL_VERSION });
      expect(pair.client.peerLimits?.maxStreams).toBe(77);
      expect([pair.client.version, pair.server.version]).toEqual([MAX_PROTOCOL_VERSION, MAX_PROTOCOL_VERSION]);
    });

    // Mixed versions: a side limited to version 1 behaves as code that knows only version 1 (no
    // vmax in its HELLO; WELCOME v 1), and the other side falls back to version 1's frames.
    for (const [label, options] of [
      ['an agent that speaks only version 1 with a newer server', { client: { maxVersion: 1 } }],
      ['a newer agent with a server that speaks only version 1', { server: { maxVersion: 1 } }],
    ] as const) {
      test(`mixed versions: ${label} agree on version 1 and move data both ways`, async () => {
        pair = await makePair(options);
        await Promise.all([pair.client.ready, pair.server.ready]);
        expect([pair.client.version, pair.server.version]).toEqual([1, 1]);
        expect(pair.client.peerInfo?.v).toBe(1);
        if (options.client) expect(pair.server.peerInfo?.vmax).toBeUndefined();
        serveEcho(pair.server);
        const payload = randomBytes(300 * 1024 + 7);
        const s = pair.client.openStream({ path: '/mixed' });
        const [echoed] = await Promise.all([readAll(s), writeAll(s, payload)]);
        expect(sha(echoed)).toBe(sha(payload));
      });
    }

    test('version 2 (raw DATA frames) moves large and empty writes both ways', async () => {
      pair = await makePair();
      await Promise.all([pair.client.ready, pair.server.ready]);
      expect(pair.client.version).toBe(2);
      serveEcho(pair.server);
      const payload = randomBytes(2 * 1024 * 1024 + 3);
      const s = pair.client.openStream({ path: '/v2' });
      const [echoed] = await Promise.all([readAll(s), writeAll(s, payload)]);
      expect(sha(echoed)).toBe(sha(payload));
      // Many odd-sized writes in one turn go out as pieces of one frame (masked with a rotated key on a client).
      const pieces = Array.from({ length: 200 }, (_, i) => randomBytes((i * 7919) % 3001 + 1));
      const odd = pair.client.openStream({ path: '/v2-odd' });
      const oddEcho = readAll(odd);
      // After the OPEN is out, the first write of a burst and the rest (joined by _writev) are two
      // pieces of the next DATA frame, the first of an odd length.
      odd.write(pieces[0]!);
      await new Promise((r) => setTimeout(r, 20));
      for (const p of pieces.slice(1)) odd.write(p);
      odd.end();
      expect(sha(await oddEcho)).toBe(sha(Buffer.concat(pieces)));
      const empty = pair.client.openStream({ path: '/v2-empty' });
      const [nothing] = await Promise.all([readAll(empty), writeAll(empty, Buffer.alloc(0))]);
      expect(nothing.length).toBe(0);
    });

    test('chunks handed over (handsOverWrites) arrive byte-exact at every offset; chunks not handed over are left unchanged', async () => {
      pair = await makePair();
      serveEcho(pair.server);
      // Odd sizes put the pieces of one DATA frame at every offset modulo 4 (a client's masking key
      // is rotated for each); a burst in one turn makes frames of several pieces.
      const sizes = Array.from({ length: 120 }, (_, i) => ((i * 7919) % 4099) + 1);
      for (const handsOver of [true, false]) {
        const chunks = sizes.map((n) => randomBytes(n));
        const copies = chunks.map((c) => Buffer.from(c));
        const s = pair.client.openStream({ path: handsOver ? '/handed-over' : '/kept' });
        s.handsOverWrites = handsOver;
        const echoed = readAll(s);
        s.write(chunks[0]!);
        await new Promise((r) => setTimeout(r, 20));
        for (const c of chunks.slice(1)) s.write(c);
        s.end(randomBytes(0));
        expect(sha(await echoed)).toBe(sha(Buffer.concat(copies)));
        // What the writer kept may have changed only where it said so.
        if (!handsOver) expect(chunks.every((c, i) => c.equals(copies[i]!))).toBe(true);
      }
    });

    test('replyOf: resolves with the REPLY head, for every caller and after it came; rejects when the stream ends first, even when asked after', async () => {
      pair = await makePair();
      const { client, server } = pair;
      const held: TunnelStream[] = [];
      server.on('stream', (s) => {
        if (s.peerHead?.answer === true) s.reply({ status: 201 }, { end: true });
        else held.push(s);
        s.resume();
      });
      await client.ready;
      const answered = client.openStream({ answer: true }, { end: true });
      const [a, b] = await Promise.all([replyOf(answered), replyOf(answered)]);
      expect(a).toEqual({ status: 201 });
      expect(b).toBe(a);
      expect(await replyOf(answered)).toBe(a);
      const reset = client.openStream({ answer: false });
      const early = replyOf(reset);
      await waitFor(() => held.length === 1, 'the server to hold the stream');
      held[0]!.reset('CANCELLED', 'server gave up');
      await expect(early).rejects.toMatchObject({ code: 'CANCELLED' });
      await expect(replyOf(reset)).rejects.toMatchObject({ code: 'CANCELLED' });
      const dropped = client.openStream({ answer: false });
      const waiting = replyOf(dropped);
      dropped.destroy();
      await expect(waiting).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
      await expect(replyOf(dropped)).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
    });

    test('a stream opened with head, data and end in one call arrives whole, and the reply comes back the same way', async () => {
      pair = await makePair();
      pair.server.on('stream', async (s) => {
        const body = await readAll(s);
        s.reply({ status: 201, got: body.length }, { data: Buffer.from(`you sent ${body.toString()}`), end: true });
      });
      const s = pair.client.openStream({ method: 'POST', path: '/x' }, { data: Buffer.from('hello'), end: true });
      const [reply] = (await once(s, 'reply')) as [Record<string, unknown>];
      expect(reply).toEqual({ status: 201, got: 5 });
      expect((await readAll(s)).toString()).toBe('you sent hello');
    });

    test('takeWhole: an answer that came whole is taken in one piece, its buffers released, and the stream closes cleanly', async () => {
      pair = await makePair();
      pair.server.on('stream', (s) => {
        s.reply({ status: 200 }, { data: Buffer.from(`whole answer to ${String(s.peerHead?.path)}`), end: true });
      });
      const s = pair.client.openStream({ path: '/w' }, { end: true });
      await once(s, 'reply');
      // The reply's data and END came in the same frame: everything is here before anything was read.
      await waitFor(() => s.readableLength > 0 || pair!.client.bufferedBytes > 0, 'the body to be buffered');
      const whole = s.takeWhole();
      expect(whole).not.toBeNull();
      expect(Buffer.concat(whole!).toString()).toBe('whole answer to /w');
      expect(pair.client.bufferedBytes).toBe(0);
      await once(s, 'close');
      expect(s.errored).toBeNull();
      expect(pair.client.streamCount).toBe(0);
    });

    test('takeWhole: an empty answer gives no buffers; an answer still streaming gives null and is read as usual', async () => {
      pair = await makePair();
      let release: (() => void) | null = null;
      pair.server.on('stream', (s) => {
        if (s.peerHead?.path === '/empty') {
          s.reply({ status: 204 }, { end: true });
          return;
        }
        s.reply({ status: 200 });
        s.write(Buffer.from('first;'));
        release = () => s.end(Buffer.from('last'));
      });
      const empty = pair.client.openStream({ path: '/empty' }, { end: true });
      await once(empty, 'reply');
      await waitFor(() => empty.readableEnded || empty.readableLength === 0, 'the empty body');
      expect(empty.takeWhole()).toEqual([]);
      await once(empty, 'close');
      expect(empty.errored).toBeNull();

      const streaming = pair.client.openStream({ path: '/streaming' }, { end: true });
      await once(streaming, 'reply');
      await waitFor(() => pair!.client.bufferedBytes > 0, 'the first part');
      expect(streaming.takeWhole()).toBeNull();
      const body = readAll(streaming);
      release!();
      expect((await body).toString()).toBe('first;last');
    });

    test('bulk data both ways is byte-exact and in order', async () => {
      pair = await makePair();
      serveEcho(pair.server);
      const data = randomBytes(6 * 1024 * 1024);
      const s = pair.client.openStream({ path: '/echo' });
      const [, echoed] = await Promise.all([writeAll(s, data, 300_000), readAll(s)]);
      expect(echoed.length).toBe(data.length);
      expect(sha(echoed)).toBe(sha(data));
    });

    test('either side can open streams, and their ids never collide', async () => {
      pair = await makePair();
      serveEcho(pair.server);
      pair.client.on('stream', (s) => {
        s.reply({ from: 'client' });
        s.pipe(s);
      });
      const fromClient = [0, 1, 2].map(() => pair!.client.openStream({ path: '/c' }, { data: Buffer.from('c'), end: true }));
      const fromServer = [0, 1, 2].map(() => pair!.server.openStream({ path: '/s' }, { data: Buffer.from('s'), end: true }));
      const ids = [...fromClient, ...fromServer].map((s) => s.id);
      expect(new Set(ids).size).toBe(6);
      expect(fromClient.every((s) => s.id % 2 === 1)).toBe(true);
      expect(fromServer.every((s) => s.id % 2 === 0)).toBe(true);
      const bodies = await Promise.all([...fromClient, ...fromServer].map((s) => readAll(s)));
      expect(bodies.map(String)).toEqual(['c', 'c', 'c', 's', 's', 's']);
    });

    test('half-close: the client ends its side and still receives the whole answer afterwards', async () => {
      pair = await makePair();
      pair.server.on('stream', async (s) => {
        const body = await readAll(s);
        s.reply({ status: 200 });
        for (let i = 0; i < 5; i++) {
          s.write(Buffer.from(`part${i};`));
          await new Promise((r) => setTimeout(r, 10));
        }
        s.end(Buffer.from(`len=${body.length}`));
      });
      const s = pair.client.openStream({ path: '/half' });
      s.end(Buffer.alloc(1000, 1));
      expect(s.writableFinished || (await once(s, 'finish'), true)).toBe(true);
      expect((await readAll(s)).toString()).toBe('part0;part1;part2;part3;part4;len=1000');
    });

    test('reset travels with its code in both directions and the session goes on', async () => {
      pair = await makePair();
      const serverSide: TunnelStream[] = [];
      pair.server.on('stream', (s) => {
        serverSide.push(s);
        if (s.peerHead?.path === '/fail') s.reset('UPSTREAM_ERROR', 'upstream refused');
      });
      const failing = pair.client.openStream({ path: '/fail' });
      const err = await errorOf(failing);
      expect(err).toBeInstanceOf(TunnelError);
      expect(err.code).toBe('UPSTREAM_ERROR');
      expect(err.remote).toBe(true);

      const cancelled = pair.client.openStream({ path: '/cancel' });
      await waitFor(() => serverSide.length === 2, 'the server to accept the second stream');
      const serverErr = errorOf(serverSide[1]!);
      cancelled.reset('CANCELLED', 'client went away');
      expect((await serverErr).code).toBe('CANCELLED');

      serveEcho(pair.server);
      const ok = pair.client.openStream({ path: '/ok' }, { data: Buffer.from('still fine'), end: true });
      expect((await readAll(ok)).toString()).toBe('still fine');
    });

    test('a stalled reader holds at most its window and does not delay another stream (no head-of-line blocking)', async () => {
      const initialWindow = 256 * 1024;
      pair = await makePair({ client: { limits: { initialWindow } } });
      let stalledWriter: TunnelStream | null = null;
      pair.server.on('stream', (s) => {
        s.reply({ status: 200 });
        if (s.peerHead?.path === '/stalled') {
          stalledWriter = s;
          // Writes far more than the window; the client never reads it.
          const big = Buffer.alloc(64 * 1024, 7);
          const pump = () => {
            while (!s.destroyed && s.write(big));
          };
          s.on('drain', pump);
          pump();
        } else {
          s.end(randomBytes(20 * 1024 * 1024));
        }
      });
      const stalled = pair.client.openStream({ path: '/stalled' });
      stalled.pause();
      await waitFor(() => stalledWriter !== null && pair!.client.bufferedBytes >= initialWindow - 64 * 1024, 'the stalled stream to fill its window');
      const bulk = pair.client.openStream({ path: '/bulk' });
      const body = await readAll(bulk);
      expect(body.length).toBe(20 * 1024 * 1024);
      // What the client holds for the stalled stream: its queue plus one chunk in the Readable buffer.
      expect(pair.client.bufferedBytes + stalled.readableLength).toBeLessThanOrEqual(initialWindow + 64 * 1024);
      expect(entryOf(stalledWriter!).sendCredit).toBeGreaterThanOrEqual(0);
      stalled.reset();
    });

    test('a writer whose peer stopped reading keeps at most one chunk on its side, the rest waiting in the peer', async () => {
      const initialWindow = 256 * 1024;
      const chunk = 64 * 1024;
      pair = await makePair({ client: { limits: { initialWindow } }, server: { tuning: { chunkSize: chunk } } });
      let writer: TunnelStream | null = null;
      let writes = 0;
      pair.server.on('stream', (s) => {
        s.reply({ status: 200 });
        writer = s;
        const big = Buffer.alloc(chunk, 7);
        const pump = () => {
          while (!s.destroyed && (writes++, s.write(big)));
        };
        s.on('drain', pump);
        pump();
      });
      const stalled = pair.client.openStream({ path: '/stalled' });
      stalled.pause();
      // The window is spent and the writer's last write waits for credit that never comes.
      await waitFor(() => writer !== null && entryOf(writer).sendCredit === 0 && pair!.client.bufferedBytes + stalled.readableLength >= initialWindow, 'the window to be spent');
      const before = writes;
      await new Promise((r) => setTimeout(r, 50));
      expect(writes).toBe(before);
      // On the writer's side: only the write that could not complete (the Duplex holds it), nothing
      // queued behind it and no completed write left in the session's queue.
      expect(writer!.bufferedLength).toBeLessThanOrEqual(chunk);
      stalled.reset();
    });

    test('closing the session fails every open stream at once with a coded error', async () => {
      pair = await makePair();
      pair.server.on('stream', (s) => s.reply({ status: 200 }));
      const streams = [0, 1, 2].map(() => pair!.client.openStream({ path: '/hang' }));
      await Promise.all(streams.map((s) => once(s, 'reply')));
      const errors = Promise.all(streams.map((s) => errorOf(s)));
      pair.server.close(new TunnelError('AUTH_REVOKED', 'token revoked'));
      const errs = await errors;
      expect(errs.map((e) => e.code)).toEqual(['AUTH_REVOKED', 'AUTH_REVOKED', 'AUTH_REVOKED']);
      await waitFor(() => pair!.client.state === 'closed', 'the client session to close');
      expect(pair.client.closeError?.code).toBe('AUTH_REVOKED');
    });

    test('drain: the peer opens nothing new, in-flight streams finish, then the session closes cleanly', async () => {
      pair = await makePair();
      let release: (() => void) | null = null;
      pair.server.on('stream', (s) => {
        s.reply({ status: 200 });
        release = () => s.end(Buffer.from('finished after drain'));
      });
      const inflight = pair.client.openStream({ path: '/slow' });
      await once(inflight, 'reply');
      const goaway = once(pair.client, 'goaway');
      const drained = pair.server.drain('restarting', 10_000);
      const [info] = (await goaway) as [{ code: string; message: string }];
      expect(info.code).toBe('GOING_AWAY');
      expect(info.message).toBe('restarting');
      expect(() => pair!.client.openStream({ path: '/new' })).toThrow(expect.objectContaining({ code: 'STREAM_REFUSED' }));
      release!();
      expect((await readAll(inflight)).toString()).toBe('finished after drain');
      inflight.end();
      await drained;
      expect(pair.server.closeError).toBeNull();
      await waitFor(() => pair!.client.state === 'closed', 'the client session to close');
    });

    test('drain grace: streams still open when the grace ends are reset with GOING_AWAY', async () => {
      pair = await makePair();
      pair.server.on('stream', (s) => s.reply({ status: 200 }));
      const stuck = pair.client.openStream({ path: '/stuck' });
      await once(stuck, 'reply');
      const err = errorOf(stuck);
      await pair.server.drain('bye', 50);
      expect((await err).code).toBe('GOING_AWAY');
    });

    test('streams beyond the peer limit wait in the pending queue; beyond that, opening fails with STREAM_LIMIT', async () => {
      pair = await makePair({ server: { limits: { maxStreams: 2 } }, client: { tuning: { maxPendingOpens: 2 } } });
      await pair.client.ready;
      const held: TunnelStream[] = [];
      pair.server.on('stream', (s) => {
        held.push(s);
        s.reply({ n: held.length });
      });
      const opened = [0, 1, 2, 3].map(() => pair!.client.openStream({ path: '/p' }));
      expect(() => pair!.client.openStream({ path: '/p' })).toThrow(expect.objectContaining({ code: 'STREAM_LIMIT' }));
      await waitFor(() => held.length === 2, 'two streams at the server');
      await new Promise((r) => setTimeout(r, 50));
      expect(held.length).toBe(2);
      for (const s of held.splice(0)) s.end();
      for (const s of opened.slice(0, 2)) s.end();
      await waitFor(() => held.length === 2, 'the two pending streams to open');
      for (const s of held) s.end();
      for (const s of opened.slice(2)) s.end();
      await Promise.all(opened.map((s) => readAll(s)));
    });

    test('keepalive measures the round-trip time', async () => {
      pair = await makePair();
      await pair.client.ready;
      await waitFor(() => pair!.client.rttMs !== null && pair!.server.rttMs !== null, 'both sides to measure the round-trip time');
      expect(pair.client.rttMs).toBeGreaterThanOrEqual(0);
      // The base round-trip time (window growth uses it) is the least sample, never above the smoothed one.
      expect(pair.client.baseRttMs).not.toBeNull();
      expect(pair.client.baseRttMs!).toBeLessThanOrEqual(pair.client.rttMs!);
    });

    test('a stream reset before its OPEN went out does not make the peer close the session', async () => {
      pair = await makePair();
      serveEcho(pair.server);
      await Promise.all([pair.client.ready, pair.server.ready]);
      // Reset in the same turn as the open: the OPEN is still waiting for the writer.
      const never = pair.client.openStream({ path: '/never' });
      const err = errorOf(never);
      never.reset('CANCELLED', 'changed my mind');
      expect((await err).code).toBe('CANCELLED');
      const ok = pair.client.openStream({ path: '/ok' }, { data: Buffer.from('after the reset'), end: true });
      expect((await readAll(ok)).toString()).toBe('after the reset');
      expect(pair.client.state).toBe('open');
      expect(pair.server.state).toBe('open');
    });

    test('an empty write does not stall the stream: later writes and the end still go through', async () => {
      pair = await makePair();
      serveEcho(pair.server);
      const s = pair.client.openStream({ path: '/empty' });
      s.write(Buffer.alloc(0));
      s.write(Buffer.from('after nothing'));
      s.write(Buffer.alloc(0));
      s.end();
      expect((await readAll(s)).toString()).toBe('after nothing');
    });

    test('200 concurrent streams with one stalled reader: all the others complete', async () => {
      pair = await makePair();
      pair.server.on('stream', (s) => s.reply({ status: 200 }, { data: Buffer.alloc(Number(s.peerHead?.size ?? 0), 3), end: true }));
      const stalled = pair.client.openStream({ size: 2_000_000 });
      stalled.pause();
      const others = Array.from({ length: 200 }, (_, i) => pair!.client.openStream({ size: 1000 + i }, { end: true }));
      const bodies = await Promise.all(others.map((s) => readAll(s)));
      expect(bodies.map((b) => b.length)).toEqual(others.map((_, i) => 1000 + i));
      stalled.reset();
    });
  });
}
