/**
 * Property-based tests of a session pair over the in-memory transport: random sets of streams opened
 * from both sides, random chunk lists, half-closes in random orders, resets at random points, random
 * small windows and chunk sizes. Every frame either side sends is decoded and checked against the
 * flow-control rules as it goes out.
 *
 * To reproduce a failure, run with the seed fast-check printed: FC_SEED=<seed> npm run jest -- src/protocol/property
 * (FC_RUNS=<n> runs more cases than the default 40).
 */
import fc from 'fast-check';
import { TunnelError } from './errors.js';
import { FrameKind, type Frame } from './frames.js';
import { createMemoryTransportPair } from './memory-transport.js';
import { Session, type SessionOptions } from './session.js';
import type { TunnelStream } from './stream.js';
import { RecordingTransport } from './testing/recording-transport.js';
import { knownEntries } from './testing/stream-internals.js';

type Side = 'client' | 'server';

interface Chunk {
  size: number;
  seed: number;
}

interface StreamPlan {
  opener: Side;
  /** Chunks the opener writes (opener to acceptor). */
  up: Chunk[];
  /** Chunks the acceptor writes (acceptor to opener). */
  down: Chunk[];
  /** The opener passes its first chunk to openStream, in the OPEN frame. */
  firstInOpen: boolean;
  /** The opener ends its direction in openStream, its one chunk (if any) in the OPEN frame. Only with at most one chunk. */
  endInOpen: boolean;
  /** The acceptor reads the whole request before it answers (HTTP style); otherwise both directions run at once. */
  acceptorWaits: boolean;
  /** The acceptor answers with reply(head, { data, end }) rather than plain writes. */
  explicitReply: boolean;
  /** Readers that pause this many event-loop turns after each chunk (0: read at once), so credit comes back late. */
  slowReader: number;
  /** One side aborts the stream after writing `after` of its chunks and waiting `turns` event-loop turns. */
  reset: { by: 'opener' | 'acceptor'; after: number; turns: number } | null;
}

interface SideConfig {
  initialWindow: number;
  maxStreams: number;
  chunkSize: number;
}

interface Scenario {
  streams: StreamPlan[];
  client: SideConfig;
  server: SideConfig;
}

/** Deterministic bytes for a chunk (xorshift32), so a failing case replays exactly from its seed. */
function bytesOf(c: Chunk): Buffer {
  const b = Buffer.allocUnsafe(c.size);
  let x = c.seed | 1;
  for (let i = 0; i < c.size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

const chunk = fc.record({ size: fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.integer({ min: 0, max: 64 })), seed: fc.integer() });
const chunks = fc.array(chunk, { minLength: 0, maxLength: 4 });

const streamPlan: fc.Arbitrary<StreamPlan> = fc
  .record({
    opener: fc.constantFrom<Side>('client', 'server'),
    up: chunks,
    down: chunks,
    firstInOpen: fc.boolean(),
    endInOpen: fc.boolean(),
    acceptorWaits: fc.boolean(),
    explicitReply: fc.boolean(),
    slowReader: fc.nat(2),
    reset: fc.option(fc.record({ by: fc.constantFrom<'opener' | 'acceptor'>('opener', 'acceptor'), after: fc.nat(4), turns: fc.nat(3) }), { freq: 3 }),
  })
  .map((p) => {
    // A reset happens before the resetting side ends its direction: after at most all of its chunks.
    if (p.reset) p.reset.after = Math.min(p.reset.after, (p.reset.by === 'opener' ? p.up : p.down).length);
    return p;
  });

const sideConfig: fc.Arbitrary<SideConfig> = fc.record({
  initialWindow: fc.integer({ min: 1024, max: 300_000 }),
  maxStreams: fc.integer({ min: 1, max: 8 }),
  chunkSize: fc.integer({ min: 512, max: 70_000 }),
});

const scenario: fc.Arbitrary<Scenario> = fc.record({
  streams: fc.array(streamPlan, { minLength: 1, maxLength: 8 }),
  client: sideConfig,
  server: sideConfig,
});

/** What one end of a stream saw. */
interface Observed {
  stream: TunnelStream;
  chunks: Buffer[];
  ended: boolean;
  error: Error | null;
  closed: boolean;
  /** Resolves when the readable side ended or failed. */
  readDone: Promise<void>;
}

function observe(stream: TunnelStream, slowReader: number): Observed {
  const o: Observed = { stream, chunks: [], ended: false, error: null, closed: false, readDone: Promise.resolve() };
  o.readDone = new Promise((resolve) => {
    stream.on('data', (c: Buffer) => {
      o.chunks.push(c);
      if (slowReader > 0) {
        stream.pause();
        void turns(slowReader).then(() => stream.resume());
      }
    });
    stream.once('end', () => {
      o.ended = true;
      resolve();
    });
    stream.once('error', (err) => {
      o.error = err;
      resolve();
    });
  });
  stream.once('close', () => {
    o.closed = true;
  });
  return o;
}

function turns(n: number): Promise<void> {
  return n === 0 ? Promise.resolve() : new Promise((resolve) => setImmediate(() => void turns(n - 1).then(resolve)));
}

/** Writes one chunk, waiting for drain when the stream asks; false once the stream is destroyed. */
async function writeChunk(s: TunnelStream, data: Buffer): Promise<boolean> {
  if (s.destroyed) return false;
  if (s.write(data)) return true;
  await new Promise<void>((resolve) => {
    const done = () => {
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    s.on('drain', done);
    s.on('close', done);
  });
  return !s.destroyed;
}

/** Writes the chunks, then ends the direction, or resets the stream at the planned point instead. */
async function writeSide(s: TunnelStream, data: Buffer[], alreadyWritten: number, reset: { after: number; turns: number } | null): Promise<void> {
  let written = alreadyWritten;
  for (const c of data) {
    if (reset && written >= reset.after) break;
    if (!(await writeChunk(s, c))) return;
    written++;
  }
  if (reset) {
    // With no turns and nothing written, the reset happens in the same turn as the open: before the
    // writer has put the OPEN on the wire.
    if (reset.turns > 0) await turns(reset.turns);
    s.reset('CANCELLED', 'reset by the property test');
  } else if (!s.destroyed) {
    s.end();
  }
}

/**
 * Checks every frame a side sends: no stream's credit or window is negative on either side, and the
 * bytes sent on each stream never exceed the credit the receiver granted (its initial window plus
 * the WINDOW increments it has sent so far).
 */
class FlowAuditor {
  readonly violations: string[] = [];
  private readonly sent = new Map<string, number>();
  private readonly granted = new Map<string, number>();
  sessions: Record<Side, Session> | null = null;

  constructor(private readonly initialWindow: Record<Side, number>) {}

  observe(sender: Side, frame: Frame): void {
    const receiver: Side = sender === 'client' ? 'server' : 'client';
    if (frame.kind === FrameKind.WINDOW) {
      // Credit granted by `sender` for what `receiver` sends on this stream.
      const key = `${receiver}:${frame.id}`;
      this.granted.set(key, this.grantedFor(key, sender) + frame.increment);
    }
    if (frame.kind === FrameKind.OPEN || frame.kind === FrameKind.REPLY || frame.kind === FrameKind.DATA) {
      const key = `${sender}:${frame.id}`;
      const total = (this.sent.get(key) ?? 0) + (frame.data?.byteLength ?? 0);
      this.sent.set(key, total);
      const credit = this.grantedFor(key, receiver);
      if (total > credit) this.violations.push(`${sender} sent ${total} bytes on stream ${frame.id} with only ${credit} bytes of credit granted`);
    }
    if (!this.sessions) return;
    for (const side of ['client', 'server'] as const) {
      for (const s of knownEntries(this.sessions[side])) {
        if (s.sendCredit < 0) this.violations.push(`${side} stream ${s.id} has negative send credit ${s.sendCredit}`);
        if (s.window.outstanding < 0) this.violations.push(`${side} stream ${s.id} has a negative receive window ${s.window.outstanding}`);
      }
    }
  }

  private grantedFor(key: string, receiver: Side): number {
    return this.granted.get(key) ?? this.initialWindow[receiver];
  }
}

function describePlan(p: StreamPlan): string {
  const sizes = (cs: Chunk[]) => `[${cs.map((c) => c.size).join(',')}]`;
  const reset = p.reset ? `, reset by ${p.reset.by} after ${p.reset.after} chunks + ${p.reset.turns} turns` : '';
  return `opened by ${p.opener}, up ${sizes(p.up)}, down ${sizes(p.down)}${reset}`;
}

function describeEnd(o: Observed | undefined): string {
  if (!o) return 'never seen';
  const bytes = o.chunks.reduce((n, c) => n + c.length, 0);
  return `${bytes} bytes, ${o.error ? `error ${(o.error as TunnelError).code ?? o.error.message}` : o.ended ? 'ended' : 'not ended'}, ${o.closed ? 'closed' : 'open'}`;
}

async function runScenario(sc: Scenario): Promise<void> {
  const [a, b] = createMemoryTransportPair();
  const auditor = new FlowAuditor({ client: sc.client.initialWindow, server: sc.server.initialWindow });
  const clientWire = new RecordingTransport(a, (f) => auditor.observe('client', f));
  const serverWire = new RecordingTransport(b, (f) => auditor.observe('server', f));
  const options = (c: SideConfig): Partial<SessionOptions> => ({ limits: { initialWindow: c.initialWindow, maxStreams: c.maxStreams }, tuning: { chunkSize: c.chunkSize } });
  const sessions: Record<Side, Session> = {
    server: new Session(serverWire, { role: 'server', ...options(sc.server) }),
    client: new Session(clientWire, { role: 'client', ...options(sc.client) }),
  };
  auditor.sessions = sessions;
  const openers: Array<Observed | undefined> = [];
  const acceptors: Array<Observed | undefined> = [];
  const failures: string[] = [];

  for (const side of ['client', 'server'] as const) {
    sessions[side].on('stream', (s) => {
      const i = s.peerHead?.i;
      const plan = typeof i === 'number' ? sc.streams[i] : undefined;
      if (!plan || acceptors[i as number]) {
        failures.push(`${side} accepted an unexpected stream with head ${JSON.stringify(s.peerHead)}`);
        return;
      }
      const o = observe(s, plan.slowReader);
      acceptors[i as number] = o;
      void (async () => {
        const down = plan.down.map(bytesOf);
        const reset = plan.reset?.by === 'acceptor' ? plan.reset : null;
        if (plan.acceptorWaits && !reset) await o.readDone;
        let written = 0;
        if (plan.explicitReply && !s.destroyed) {
          const first = down.length > 0 && (!reset || reset.after >= 1) ? down[0] : undefined;
          const end = !reset && down.length <= 1;
          s.reply({ i: i as number }, { data: first, end });
          if (end) return;
          if (first) written = 1;
        }
        await writeSide(s, down.slice(written), written, reset);
      })().catch((err: unknown) => failures.push(`acceptor of stream ${i as number} failed: ${String(err)}`));
    });
  }

  try {
    await Promise.all([sessions.client.ready, sessions.server.ready]);
    const openerRuns = sc.streams.map(async (plan, i) => {
      const up = plan.up.map(bytesOf);
      const reset = plan.reset?.by === 'opener' ? plan.reset : null;
      const endInOpen = plan.endInOpen && !reset && up.length <= 1;
      // Ending in openStream means everything goes in the OPEN frame.
      const first = (plan.firstInOpen || endInOpen) && up.length > 0 && (!reset || reset.after >= 1) ? up[0] : undefined;
      const s = sessions[plan.opener].openStream({ i }, { data: first, end: endInOpen });
      openers[i] = observe(s, plan.slowReader);
      if (!endInOpen) await writeSide(s, up.slice(first ? 1 : 0), first ? 1 : 0, reset);
    });
    await Promise.all(openerRuns);

    // Wait for quiet: every stream closed at both ends, nothing in flight, nothing left in the tables.
    const deadline = Date.now() + 20_000;
    const quiet = () =>
      openers.every((o) => o?.closed) &&
      acceptors.every((o) => !o || o.closed) &&
      clientWire.bufferedAmount === 0 &&
      serverWire.bufferedAmount === 0 &&
      sessions.client.streamCount === 0 &&
      sessions.server.streamCount === 0;
    while (!quiet()) {
      if (Date.now() > deadline || sessions.client.state === 'closed' || sessions.server.state === 'closed') break;
      await turns(1);
    }
    await turns(2);

    const report = () =>
      [
        `client session ${sessions.client.state} (${sessions.client.closeError?.code ?? 'no error'}), ${sessions.client.streamCount} streams, ${sessions.client.bufferedBytes} bytes buffered`,
        `server session ${sessions.server.state} (${sessions.server.closeError?.code ?? 'no error'}), ${sessions.server.streamCount} streams, ${sessions.server.bufferedBytes} bytes buffered`,
        ...sc.streams.map((p, i) => `stream #${i} (${describePlan(p)}): opener ${describeEnd(openers[i])}; acceptor ${describeEnd(acceptors[i])}`),
      ].join('\n  ');

    const problems = [...failures, ...auditor.violations];
    for (const side of ['client', 'server'] as const) {
      if (sessions[side].state !== 'open') problems.push(`the ${side} session closed (${sessions[side].closeError?.code ?? 'cleanly'}: ${sessions[side].closeError?.message ?? ''})`);
      if (sessions[side].streamCount !== 0) problems.push(`the ${side} session still counts ${sessions[side].streamCount} streams`);
      if (sessions[side].bufferedBytes !== 0) problems.push(`the ${side} session still holds ${sessions[side].bufferedBytes} received bytes`);
    }
    sc.streams.forEach((plan, i) => {
      const opener = openers[i];
      const acceptor = acceptors[i];
      if (!opener) return problems.push(`stream #${i} was never opened`);
      if (plan.reset) {
        if (!(opener.error instanceof TunnelError)) problems.push(`stream #${i} was reset, but its opener ended with ${opener.error ? String(opener.error) : 'no error'}`);
        if (acceptor && !(acceptor.error instanceof TunnelError)) problems.push(`stream #${i} was reset, but its acceptor ended with ${acceptor.error ? String(acceptor.error) : 'no error'}`);
        if (plan.reset.by === 'acceptor' && !acceptor) problems.push(`stream #${i} was to be reset by its acceptor, which never saw it`);
        return;
      }
      const up = Buffer.concat(plan.up.map(bytesOf));
      const down = Buffer.concat(plan.down.map(bytesOf));
      if (opener.error) problems.push(`stream #${i} failed at its opener: ${String(opener.error)}`);
      if (!acceptor) return problems.push(`stream #${i} never reached its acceptor`);
      if (acceptor.error) problems.push(`stream #${i} failed at its acceptor: ${String(acceptor.error)}`);
      if (!opener.ended || !acceptor.ended) problems.push(`stream #${i} did not end in both directions`);
      if (!Buffer.concat(acceptor.chunks).equals(up)) problems.push(`stream #${i}: the acceptor received ${Buffer.concat(acceptor.chunks).length} bytes that differ from the ${up.length} sent`);
      if (!Buffer.concat(opener.chunks).equals(down)) problems.push(`stream #${i}: the opener received ${Buffer.concat(opener.chunks).length} bytes that differ from the ${down.length} sent`);
      return undefined;
    });
    if (problems.length > 0) throw new Error(`${problems.slice(0, 10).join('\n')}\nstate:\n  ${report()}`);
  } finally {
    sessions.client.close();
    sessions.server.close();
  }
}

const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
/** Modest by default so the file stays fast on a small CI machine; raise FC_RUNS to search harder. */
const numRuns = process.env.FC_RUNS ? Number(process.env.FC_RUNS) : 40;

test('random streams from both sides deliver exactly their bytes, resets fail both ends, and credit is never exceeded', async () => {
  await fc.assert(fc.asyncProperty(scenario, runScenario), { numRuns, seed, endOnFailure: true });
});
