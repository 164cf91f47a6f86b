/**
 * One client process of the scale test (bench/scale.ts), driven over IPC: it keeps `n` idle
 * agent connections to kas, each a real WebSocket running the protocol's Session (HELLO, pings)
 * like agentk's, and reconnects each one on its own with agentk's jittered exponential backoff
 * (src/agent/tunnel/backoff.ts): after a connection ends, a delay uniform in
 * [0, min(60 s, 1 s × 2^attempt)), the attempt counter reset after a minute up.
 *
 * In:  { cmd: 'start', url, token, n, ca?, rampConcurrency } | { cmd: 'stop' }
 * Out: { ready, attempts, failures, connects: [[epochSecond, count], ...] } every 250 ms
 */
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import { Backoff } from '../src/agent/tunnel/backoff.js';
import { Session } from '../src/protocol/session.js';
import { WsTransport } from '../src/shared/ws-transport.js';

interface StartMessage {
  cmd: 'start';
  url: string;
  token: string;
  n: number;
  ca?: string;
  /** Dials in flight at once during the first ramp-up (later reconnects are not limited: each agent is on its own). */
  rampConcurrency: number;
}

let stopping = false;
let ready = 0;
let attempts = 0;
let failures = 0;
let connects = new Map<number, number>();
const sockets = new Set<WebSocket>();

let rampSlots = 0;
const rampWaiters: (() => void)[] = [];
let ramping = true;

async function rampGate(limit: number): Promise<() => void> {
  if (!ramping) return () => undefined;
  if (rampSlots >= limit) await new Promise<void>((resolve) => rampWaiters.push(resolve));
  rampSlots++;
  return () => {
    rampSlots--;
    rampWaiters.shift()?.();
  };
}

/**
 * One connection: resolves with how long the session was up (0 when it never opened).
 * `dialed` is called once, when the handshake is done or the attempt failed.
 */
function connectOnce(m: StartMessage, dialed: () => void): Promise<number> {
  attempts++;
  return new Promise((resolve) => {
    const ws = new WebSocket(m.url, {
      headers: { Authorization: `Bearer ${m.token}` },
      perMessageDeflate: false,
      maxPayload: 1024 * 1024 + 4096,
      handshakeTimeout: 10_000,
      followRedirects: false,
      ...(m.ca ? { ca: m.ca } : {}),
    });
    sockets.add(ws);
    let socket: Socket | undefined;
    let openedAt = 0;
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      sockets.delete(ws);
      if (openedAt) ready--;
      else failures++;
      dialed();
      resolve(openedAt ? Date.now() - openedAt : 0);
    };
    ws.once('upgrade', (res) => {
      socket = res.socket as Socket;
    });
    ws.on('error', () => {
      if (ws.readyState !== ws.OPEN) done();
    });
    ws.once('close', () => done());
    ws.once('open', () => {
      const session = new Session(new WsTransport(ws, socket ? { socket } : {}), {
        role: 'client',
        hello: { agentVersion: 'bench-scale', agentCommit: '', podNamespace: 'bench', podName: `scale-${process.pid}`, kubernetesVersion: '', features: [] },
      });
      session.ready.then(
        () => {
          if (settled) return;
          openedAt = Date.now();
          ready++;
          const sec = Math.floor(openedAt / 1000);
          connects.set(sec, (connects.get(sec) ?? 0) + 1);
          dialed();
        },
        () => undefined,
      );
      session.on('close', () => {
        ws.terminate();
        done();
      });
    });
  });
}

/** One agent connection slot, as agentk's pool runs it: dial, run until the end, back off, dial again. */
async function slot(m: StartMessage): Promise<void> {
  const backoff = new Backoff();
  while (!stopping) {
    const release = await rampGate(m.rampConcurrency);
    let released = false;
    const upMs = await connectOnce(m, () => {
      if (!released) {
        released = true;
        release();
      }
    });
    if (stopping) return;
    backoff.connectionEnded(upMs);
    const delay = backoff.next();
    await new Promise((r) => setTimeout(r, delay));
  }
}

process.on('message', (m: StartMessage | { cmd: 'stop' }) => {
  if (m.cmd === 'stop') {
    stopping = true;
    for (const ws of sockets) ws.terminate();
    setTimeout(() => process.exit(0), 200);
    return;
  }
  for (let i = 0; i < m.n; i++) void slot(m);
  const report = setInterval(() => {
    if (ramping && ready >= m.n) ramping = false;
    const c = [...connects.entries()];
    connects = new Map();
    process.send?.({ ready, attempts, failures, connects: c });
  }, 250);
  report.unref();
});
process.on('disconnect', () => process.exit(0));
