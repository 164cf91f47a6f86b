/**
 * The writer's scheduling: data goes out in bounded chunks, round robin over the streams that have
 * data, and control frames (RESET, WINDOW, PONG) jump the queue ahead of bulk data. Observed by
 * recording every frame the client session hands to its transport.
 */
import { randomBytes } from 'node:crypto';
import { encodeFrame, FrameKind, type Frame } from './frames.js';
import { createMemoryTransportPair } from './memory-transport.js';
import { Session, type SessionOptions } from './session.js';
import type { TunnelStream } from './stream.js';
import { readAll } from '../../test/support/streams.js';
import { waitFor } from '../../test/support/wait.js';
import { RecordingTransport } from './testing/recording-transport.js';
import { entryOf } from './testing/stream-internals.js';

const KiB = 1024;
const MiB = 1024 * 1024;

interface Recorded {
  client: Session;
  server: Session;
  /** The client's transport: `sent` holds every frame the client sent, in order. */
  wire: RecordingTransport;
  /** Called for each frame the client sends, before it is handed on. */
  onSend: { fn: ((frame: Frame, index: number) => void) | null };
}

const pairs: Recorded[] = [];
afterEach(() => {
  for (const p of pairs.splice(0)) {
    p.client.close();
    p.server.close();
  }
});

async function recordedPair(client: Partial<SessionOptions> = {}, server: Partial<SessionOptions> = {}): Promise<Recorded> {
  const [a, b] = createMemoryTransportPair();
  const onSend: Recorded['onSend'] = { fn: null };
  const wire = new RecordingTransport(a, (frame, index) => onSend.fn?.(frame, index));
  const s = new Session(b, { role: 'server', ...server });
  const c = new Session(wire, { role: 'client', ...client });
  const p = { client: c, server: s, wire, onSend };
  pairs.push(p);
  await Promise.all([c.ready, s.ready]);
  return p;
}

/** Server side: collects each accepted stream's body and answers with its length; /download gets 1 MiB. */
function sink(server: Session): Map<number, Promise<Buffer>> {
  const bodies = new Map<number, Promise<Buffer>>();
  server.on('stream', (s) => {
    if (s.peerHead?.path === '/download') {
      s.end(Buffer.alloc(MiB, 1));
      return;
    }
    const body = readAll(s);
    bodies.set(s.id, body);
    void body.then((b) => s.end(Buffer.from(String(b.length)))).catch(() => undefined);
  });
  return bodies;
}

/** Data-carrying frames (OPEN/DATA with bytes) of the given streams, in the order they were sent. */
function dataFrames(frames: Frame[], ids: number[]): Array<{ id: number; bytes: number }> {
  const out: Array<{ id: number; bytes: number }> = [];
  for (const f of frames) {
    if ((f.kind === FrameKind.DATA || f.kind === FrameKind.OPEN) && ids.includes(f.id) && f.data && f.data.byteLength > 0) {
      out.push({ id: f.id, bytes: f.data.byteLength });
    }
  }
  return out;
}

/** Longest run of consecutive frames of one stream, counted while every stream still had frames to come. */
function longestRunWhileAllBusy(seq: Array<{ id: number }>, ids: number[]): { run: number; at: number } {
  const lastIndex = Math.min(...ids.map((id) => seq.map((f) => f.id).lastIndexOf(id)));
  let best = { run: 0, at: 0 };
  let run = 0;
  for (let i = 0; i <= lastIndex; i++) {
    run = i > 0 && seq[i]!.id === seq[i - 1]!.id ? run + 1 : 1;
    if (run > best.run) best = { run, at: i };
  }
  return best;
}

async function writeBoth(p: Recorded, size: number): Promise<{ streams: TunnelStream[]; payloads: Buffer[] }> {
  const bodies = sink(p.server);
  const payloads = [randomBytes(size), randomBytes(size)];
  const streams = payloads.map(() => p.client.openStream({ path: '/upload' }));
  // Both writes land in the same turn: the writer sees two streams full of data.
  streams.forEach((s, i) => s.end(payloads[i]));
  const answers = await Promise.all(streams.map((s) => readAll(s)));
  expect(answers.map(String)).toEqual([String(size), String(size)]);
  const received = await Promise.all(streams.map((s) => bodies.get(s.id)!));
  received.forEach((b, i) => expect(b.equals(payloads[i]!)).toBe(true));
  return { streams, payloads };
}

describe('fair scheduling', () => {
  test('two streams writing 2 MiB at once share the connection in turns, in chunks no larger than chunkSize', async () => {
    const p = await recordedPair({}, { limits: { initialWindow: 8 * MiB }, tuning: { maxWindow: 8 * MiB } });
    const { streams } = await writeBoth(p, 2 * MiB);
    const ids = streams.map((s) => s.id);
    const seq = dataFrames(p.wire.sent, ids);
    const chunkSize = p.client.tuning.chunkSize;
    const largest = Math.max(...seq.map((f) => f.bytes));
    expect(largest).toBeLessThanOrEqual(chunkSize);
    expect(seq.reduce((n, f) => n + f.bytes, 0)).toBe(4 * MiB);
    // The credit never ran out, so any run of one stream is the writer's choice, not flow control.
    const { run, at } = longestRunWhileAllBusy(seq, ids);
    if (run > 2) {
      throw new Error(`stream ${seq[at]!.id} sent ${run} chunks in a row (ending at data frame ${at} of ${seq.length}) while the other stream had data waiting: the writer is not round robin`);
    }
  });

  test('a smaller chunkSize (16 KiB) gives frames of at most 16 KiB, still in turns', async () => {
    const chunkSize = 16 * KiB;
    const p = await recordedPair({ tuning: { chunkSize } }, { limits: { initialWindow: 8 * MiB }, tuning: { maxWindow: 8 * MiB } });
    const { streams } = await writeBoth(p, 512 * KiB);
    const ids = streams.map((s) => s.id);
    const seq = dataFrames(p.wire.sent, ids);
    expect(Math.max(...seq.map((f) => f.bytes))).toBeLessThanOrEqual(chunkSize);
    // Full chunks, not a trickle: 512 KiB per stream in 16 KiB frames (the OPEN carries a first chunk too).
    expect(seq.length).toBeLessThanOrEqual(2 * (512 / 16) + 2);
    expect(longestRunWhileAllBusy(seq, ids).run).toBeLessThanOrEqual(2);
  });

  test('a chunkSize above the peer\'s maxFrameSize is capped so every frame fits the peer\'s limit', async () => {
    const maxFrameSize = 64 * KiB;
    const p = await recordedPair({ tuning: { chunkSize: 4 * MiB } }, { limits: { maxFrameSize, maxHeaderSize: 4 * KiB, initialWindow: 8 * MiB }, tuning: { maxWindow: 8 * MiB } });
    await writeBoth(p, 512 * KiB);
    const sizes = p.wire.sent.map((f) => encodeFrame(f).byteLength);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(maxFrameSize);
    expect(p.server.state).toBe('open');
  });

  test('a stream with only a few bytes is not starved behind a bulk stream', async () => {
    const p = await recordedPair({}, { limits: { initialWindow: 8 * MiB }, tuning: { maxWindow: 8 * MiB } });
    const bodies = sink(p.server);
    const bulk = p.client.openStream({ path: '/bulk' });
    bulk.end(randomBytes(4 * MiB));
    await Promise.resolve();
    const small = p.client.openStream({ path: '/small' }, { data: Buffer.from('tiny'), end: true });
    expect((await readAll(small)).toString()).toBe('4');
    await readAll(bulk);
    expect((await bodies.get(bulk.id)!).length).toBe(4 * MiB);
    const seq = dataFrames(p.wire.sent, [bulk.id, small.id]);
    const smallAt = seq.findIndex((f) => f.id === small.id);
    const bulkAfter = seq.slice(smallAt + 1).reduce((n, f) => n + f.bytes, 0);
    // The small stream went out in the writer's next turn, while most of the bulk was still waiting.
    expect(bulkAfter).toBeGreaterThan(2 * MiB);
  });
});

describe('control frames jump the queue', () => {
  /**
   * A client with a bulk stream that has megabytes queued behind a full transport. `prepare` runs
   * first, while the connection is still idle.
   */
  async function bulkQueued(prepare?: (p: Recorded) => Promise<void>): Promise<{ p: Recorded; bulk: TunnelStream; bulkQueuedAt: number[]; done: Promise<void> }> {
    const p = await recordedPair({}, { limits: { initialWindow: 16 * MiB }, tuning: { maxWindow: 16 * MiB } });
    const bodies = sink(p.server);
    await prepare?.(p);
    const bulkQueuedAt: number[] = [];
    let bulk: TunnelStream | null = null;
    // For every frame the client sends: how many bulk bytes were still waiting at that moment.
    p.onSend.fn = (_frame, index) => {
      bulkQueuedAt[index] = bulk ? entryOf(bulk).outBytes : 0;
    };
    // Start in a turn of the event loop in which the client has sent nothing yet (the handshake and
    // `prepare` did): the writer's first run of a turn is the microtask right after the write.
    await new Promise((r) => setImmediate(r));
    bulk = p.client.openStream({ path: '/bulk' });
    bulk.end(randomBytes(8 * MiB));
    // Let the writer run once: it fills the transport up to its high-water mark and stops.
    await Promise.resolve();
    if (!p.wire.backpressured || entryOf(bulk).outBytes < 6 * MiB) {
      throw new Error(`test setup: expected a full transport (${p.wire.bufferedAmount} bytes queued) and most of the bulk waiting (${entryOf(bulk).outBytes} bytes)`);
    }
    const b = bulk;
    const done = readAll(b).then(async () => {
      expect((await bodies.get(b.id)!).length).toBe(8 * MiB);
    });
    // Awaited by each test; a test that fails earlier must not also leave an unhandled rejection.
    done.catch(() => undefined);
    return { p, bulk, bulkQueuedAt, done };
  }

  /** Index of the first frame sent from `from` on that matches, or a failure in words. */
  function indexOf(p: Recorded, from: number, match: (f: Frame) => boolean, what: string): number {
    const i = p.wire.sent.findIndex((f, n) => n >= from && match(f));
    if (i < 0) throw new Error(`${what} was not sent in the writer's next turn: it waited behind queued data`);
    return i;
  }

  function bulkDataAfter(p: Recorded, bulk: TunnelStream, index: number): number {
    return dataFrames(p.wire.sent.slice(index + 1), [bulk.id]).reduce((n, f) => n + f.bytes, 0);
  }

  /** Lets nextTick and microtask work run (stream resumes, the writer's turn), but no transport delivery. */
  async function writerTurn(): Promise<void> {
    for (let i = 0; i < 10; i++) {
      await new Promise<void>((r) => process.nextTick(r));
      await Promise.resolve();
    }
  }

  test('a RESET goes out at once, ahead of the megabytes a bulk stream has queued', async () => {
    let other: TunnelStream | null = null;
    const { p, bulk, bulkQueuedAt, done } = await bulkQueued(async (q) => {
      // A second stream whose OPEN is already on the wire.
      other = q.client.openStream({ path: '/other' });
      await waitFor(() => q.server.streamCount === 1, 'the server to accept the second stream');
    });
    const sentBefore = p.wire.sent.length;
    other!.reset('CANCELLED', 'client went away');
    await writerTurn();
    const at = indexOf(p, sentBefore, (f) => f.kind === FrameKind.RESET && f.id === other!.id, 'the RESET');
    expect(bulkQueuedAt[at]).toBeGreaterThan(4 * MiB);
    await done;
    expect(bulkDataAfter(p, bulk, at)).toBeGreaterThan(4 * MiB);
  });

  test('a WINDOW goes out at once, ahead of the megabytes a bulk stream has queued', async () => {
    let download: TunnelStream | null = null;
    const { p, bulk, bulkQueuedAt, done } = await bulkQueued(async (q) => {
      // A download the client has not read yet: the server has used up the stream's credit.
      download = q.client.openStream({ path: '/download' });
      download.pause();
      const window = q.client.limits.initialWindow;
      await waitFor(() => q.client.bufferedBytes === window, 'the download to fill its window');
    });
    // Listening does not restart an explicitly paused stream; resume() below does.
    const body = readAll(download!);
    const sentBefore = p.wire.sent.length;
    download!.resume();
    await writerTurn();
    const at = indexOf(p, sentBefore, (f) => f.kind === FrameKind.WINDOW && f.id === download!.id, 'the WINDOW of the download');
    expect(bulkQueuedAt[at]).toBeGreaterThan(4 * MiB);
    expect((await body).length).toBe(MiB);
    await done;
    expect(bulkDataAfter(p, bulk, at)).toBeGreaterThan(4 * MiB);
  });

  test('a PONG goes out at once, ahead of the megabytes a bulk stream has queued', async () => {
    const { p, bulk, bulkQueuedAt, done } = await bulkQueued();
    const sentBefore = p.wire.sent.length;
    p.wire.inject(encodeFrame({ kind: FrameKind.PING, nonce: 4242 }));
    await writerTurn();
    const at = indexOf(p, sentBefore, (f) => f.kind === FrameKind.PONG && f.nonce === 4242, 'the PONG');
    expect(bulkQueuedAt[at]).toBeGreaterThan(4 * MiB);
    await done;
    expect(bulkDataAfter(p, bulk, at)).toBeGreaterThan(4 * MiB);
  });
});

describe('stream frames of one event-loop turn go out together', () => {
  /** Lets microtasks and nextTicks run, but not the turn's setImmediate phase. */
  async function microtasks(): Promise<void> {
    for (let i = 0; i < 10; i++) {
      await new Promise<void>((r) => process.nextTick(r));
      await Promise.resolve();
    }
  }
  const nextTurn = () => new Promise<void>((r) => setImmediate(r));

  test('the first event of a turn is written at once, the later ones of that turn together after it; a lone stream is never delayed, control frames never wait', async () => {
    const p = await recordedPair();
    sink(p.server);
    const opened = () => p.wire.sent.filter((f) => f.kind === FrameKind.OPEN).map((f) => (f as Frame & { id: number }).id);
    const all: TunnelStream[] = [];
    const open = (path: string) => {
      const s = p.client.openStream({ path }, { end: true });
      all.push(s);
      return s.id;
    };
    await nextTurn();
    // A turn in which four events each open a stream.
    const first = open('/first');
    await microtasks();
    expect(opened()).toEqual([first]);
    const later = [1, 2, 3].map((i) => open(`/later/${i}`));
    await microtasks();
    expect(opened()).toEqual([first]);
    await nextTurn();
    // The later ones went out together, in one run of the writer after the turn's I/O.
    expect(opened()).toEqual([first, ...later]);

    // Another turn: a control frame does not wait for the batch (and what was queued goes with it).
    await nextTurn();
    const first2 = open('/first2');
    const later2 = (await microtasks(), [open('/later2/a'), open('/later2/b')]);
    await microtasks();
    expect(opened()).toEqual([first, ...later, first2]);
    const beforePing = p.wire.sent.length;
    p.wire.inject(encodeFrame({ kind: FrameKind.PING, nonce: 77 }));
    await microtasks();
    const pong = p.wire.sent.findIndex((f, n) => n >= beforePing && f.kind === FrameKind.PONG && f.nonce === 77);
    expect(pong).toBeGreaterThanOrEqual(beforePing);
    expect(opened()).toEqual([first, ...later, first2, ...later2]);

    // The next turn starts afresh: a lone stream goes at once.
    await nextTurn();
    const lone = open('/lone');
    await microtasks();
    expect(opened().at(-1)).toBe(lone);
    await Promise.all(all.map((s) => readAll(s)));
  });
});
