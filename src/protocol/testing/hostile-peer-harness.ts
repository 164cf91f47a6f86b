/**
 * The test harness of the hostile-peer suites: a session on one end of an in-memory pair, the other
 * end played by hand, frame by frame (or byte by byte), recording what the session sends.
 */
import { CLOSE_CODE_BASE, TunnelError, wireOf, type TunnelErrorCode } from '../errors.js';
import { FrameKind, decodeFrame, encodeFrame, type Frame, type Head } from '../frames.js';
import { DEFAULT_LIMITS, type SessionLimits } from '../limits.js';
import { createMemoryTransportPair } from '../memory-transport.js';
import { PROTOCOL_VERSION, Session, type SessionOptions, type SessionRole } from '../session.js';
import type { TunnelStream } from '../stream.js';
import { readAll } from '../../../test/support/streams.js';
import { RecordingTransport } from '../testing/recording-transport.js';
import type { MessageTransport } from '../transport.js';


export const WAIT_MS = 5000;
// Captured before any test fakes the timers, so waits still time out with a message.
export const realSetTimeout = globalThis.setTimeout;
export const realClearTimeout = globalThis.clearTimeout;

export function kindName(kind: number): string {
  return Object.entries(FrameKind).find(([, k]) => k === kind)?.[0] ?? `kind ${kind}`;
}

export function describeFrames(frames: Frame[]): string {
  return frames.map((f) => ('id' in f ? `${kindName(f.kind)}(${f.id})` : kindName(f.kind))).join(', ') || 'nothing';
}

/** The far end of the session, played by the test: it sends whatever it likes and records what it gets. */
export class RawPeer {
  readonly frames: Frame[] = [];
  readonly undecodable: Uint8Array[] = [];
  closed: { code: number; reason: string } | null = null;
  private listeners = new Set<() => void>();
  private nonce = 1_000_000;

  constructor(readonly transport: MessageTransport, private readonly answerPings: boolean) {
    transport.start({
      message: (data) => this.onMessage(data),
      messageParts: (pieces, length) => this.onMessage(Buffer.concat(pieces, length)),
      drain: () => undefined,
      closed: (code, reason) => {
        this.closed = { code, reason };
        this.notify();
      },
    });
  }

  private onMessage(data: Uint8Array): void {
    let frame: Frame;
    try {
      frame = decodeFrame(data);
    } catch {
      this.undecodable.push(data);
      this.notify();
      return;
    }
    this.frames.push(frame);
    if (frame.kind === FrameKind.PING && this.answerPings) this.send({ kind: FrameKind.PONG, nonce: frame.nonce });
    this.notify();
  }

  send(frame: Frame): void {
    this.transport.send(encodeFrame(frame));
  }

  sendRaw(bytes: Uint8Array): void {
    this.transport.send(bytes);
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  /** Resolves with check()'s first truthy result, re-checked after every message or close. */
  until<T>(check: () => T | null | undefined | false, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const listener = () => {
        const v = check();
        if (v) {
          cleanup();
          resolve(v);
        }
      };
      const timer = realSetTimeout(() => {
        cleanup();
        const closed = this.closed ? ` The session closed the connection with code ${this.closed.code} (${this.closed.reason}).` : '';
        reject(new Error(`timed out after ${WAIT_MS} ms waiting for ${what}. The session sent: ${describeFrames(this.frames)}.${closed}`));
      }, WAIT_MS);
      const cleanup = () => {
        realClearTimeout(timer);
        this.listeners.delete(listener);
      };
      this.listeners.add(listener);
      listener();
    });
  }

  frame<F extends Frame>(match: (f: Frame) => f is F, what: string): Promise<F>;
  frame(match: (f: Frame) => boolean, what: string): Promise<Frame>;
  frame(match: (f: Frame) => boolean, what: string): Promise<Frame> {
    return this.until(() => this.frames.find(match), what);
  }

  resetOf(id: number): Promise<Frame & { kind: typeof FrameKind.RESET }> {
    return this.frame((f): f is Frame & { kind: typeof FrameKind.RESET } => f.kind === FrameKind.RESET && f.id === id, `a RESET of stream ${id}`);
  }

  closeCode(): Promise<number> {
    return this.until(() => this.closed && { code: this.closed.code }, 'the session to close the connection').then((c) => c.code);
  }

  /** A PING/PONG round trip: once it completes, the session has processed everything sent before. */
  async roundTrip(): Promise<void> {
    const nonce = ++this.nonce;
    this.send({ kind: FrameKind.PING, nonce });
    await this.frame((f) => f.kind === FrameKind.PONG && f.nonce === nonce, `the PONG of ping ${nonce} (the session seems stuck or closed)`);
  }

  /** The bytes the session sent on one stream (OPEN/REPLY data and DATA), up to and including its END. */
  async body(id: number): Promise<Buffer> {
    await this.frame((f) => (f.kind === FrameKind.DATA || f.kind === FrameKind.REPLY || f.kind === FrameKind.OPEN) && f.id === id && f.fin, `the end of stream ${id}`);
    const parts: Uint8Array[] = [];
    for (const f of this.frames) {
      if ((f.kind === FrameKind.DATA || f.kind === FrameKind.REPLY || f.kind === FrameKind.OPEN) && f.id === id && f.data) parts.push(f.data);
    }
    return Buffer.concat(parts);
  }
}

export interface Harness {
  role: SessionRole;
  session: Session;
  peer: RawPeer;
  /** The session's side of the pair, recording what it sends and able to inject a burst. */
  wire: RecordingTransport;
  /** Resolves with the session's close error once it closed. */
  closed: Promise<TunnelError | null>;
  /** Streams the peer opened that the session accepted. */
  accepted: TunnelStream[];
  /** The next stream id the peer may open (odd towards a server, even towards a client). */
  nextPeerId(): number;
}

const open: Harness[] = [];

/** Closes every harness the test made: call it from afterEach. */
export function closeHarnesses(): void {
  for (const h of open.splice(0)) {
    h.session.close();
    h.peer.transport.close(1000, 'test over');
  }
}

export function setup(role: SessionRole, options: Partial<SessionOptions> = {}, peer: { answerPings?: boolean } = {}): Harness {
  const [rawSide, sessionSide] = createMemoryTransportPair();
  const raw = new RawPeer(rawSide, peer.answerPings ?? true);
  const wire = new RecordingTransport(sessionSide);
  const session = new Session(wire, { role, ...options });
  const closed = new Promise<TunnelError | null>((resolve) => session.once('close', resolve));
  let next = role === 'server' ? 1 : 2;
  const h: Harness = { role, session, peer: raw, wire, closed, accepted: [], nextPeerId: () => ((next += 2), next - 2) };
  open.push(h);
  return h;
}

export function handshakeBody(limits: Partial<SessionLimits> = {}): Head {
  return { v: PROTOCOL_VERSION, limits: { ...DEFAULT_LIMITS, ...limits } };
}

/** A session that completed its handshake with the raw peer and echoes streams whose head says echo. */
export async function connected(role: SessionRole, options: Partial<SessionOptions> = {}, peer: { answerPings?: boolean } = {}): Promise<Harness> {
  const h = setup(role, options, peer);
  h.session.on('stream', (s) => {
    h.accepted.push(s);
    if (s.peerHead?.echo === true) {
      s.reply({ status: 200 });
      s.pipe(s);
    }
  });
  if (role === 'server') {
    h.peer.send({ kind: FrameKind.HELLO, body: handshakeBody() });
    await h.peer.frame((f) => f.kind === FrameKind.WELCOME, 'the WELCOME');
  } else {
    await h.peer.frame((f) => f.kind === FrameKind.HELLO, 'the HELLO');
    h.peer.send({ kind: FrameKind.WELCOME, body: handshakeBody() });
  }
  await h.session.ready;
  return h;
}

export async function expectSessionClosedWith(h: Harness, code: TunnelErrorCode): Promise<void> {
  const err = await h.closed;
  if (err === null) throw new Error(`the session closed cleanly, but it should have closed with ${code}`);
  expect(err).toBeInstanceOf(TunnelError);
  expect(err.code).toBe(code);
  expect(err.remote).toBe(false);
  expect(h.session.state).toBe('closed');
  expect(await h.peer.closeCode()).toBe(CLOSE_CODE_BASE + wireOf(code));
}

export async function expectStreamReset(h: Harness, id: number, code: TunnelErrorCode): Promise<void> {
  const reset = await h.peer.resetOf(id);
  expect({ id: reset.id, code: reset.code }).toEqual({ id, code: wireOf(code) });
  await h.peer.roundTrip();
  expect(h.session.state).toBe('open');
}

/** Proves the session still carries streams end to end after whatever the test did to it. */
export async function expectAStreamStillWorks(h: Harness): Promise<void> {
  const payload = Buffer.from(`still working (${h.role})`);
  if (h.role === 'server') {
    const id = h.nextPeerId();
    h.peer.send({ kind: FrameKind.OPEN, id, head: { echo: true }, data: payload, fin: true });
    expect((await h.peer.body(id)).toString()).toBe(payload.toString());
  } else {
    const s = h.session.openStream({ want: 'echo' }, { data: payload, end: true });
    const open = await h.peer.frame((f): f is Frame & { kind: typeof FrameKind.OPEN } => f.kind === FrameKind.OPEN && f.id === s.id, `the OPEN of stream ${s.id}`);
    h.peer.send({ kind: FrameKind.REPLY, id: s.id, head: { status: 200 }, data: open.data, fin: true });
    expect((await readAll(s)).toString()).toBe(payload.toString());
  }
  expect(h.session.state).toBe('open');
}

/** A stream the peer holds open towards the session: opened by the peer, or by the session and replied to. */
export async function openStreamWithPeer(h: Harness, head: Head = {}): Promise<{ id: number; stream: TunnelStream }> {
  if (h.role === 'server') {
    const id = h.nextPeerId();
    const before = h.accepted.length;
    h.peer.send({ kind: FrameKind.OPEN, id, head, data: null, fin: false });
    await h.peer.roundTrip();
    if (h.accepted.length !== before + 1) throw new Error(`the session did not accept stream ${id}`);
    return { id, stream: h.accepted[before]! };
  }
  const stream = h.session.openStream(head);
  await h.peer.frame((f) => f.kind === FrameKind.OPEN && f.id === stream.id, `the OPEN of stream ${stream.id}`);
  h.peer.send({ kind: FrameKind.REPLY, id: stream.id, head: { status: 200 }, data: null, fin: false });
  await h.peer.roundTrip();
  return { id: stream.id, stream };
}

/** A DATA frame from the peer. */
export function peerData(id: number, data: Uint8Array, fin = false): Frame {
  return { kind: FrameKind.DATA, id, data, fin };
}

