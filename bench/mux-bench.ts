/**
 * Micro-benchmark of the multiplexer alone: two Sessions over a real loopback `ws` connection,
 * nothing of kas or agentk in the path. It prints min/median/max over several rounds and writes a
 * JSON file to bench/results/. Ratios against a plain ws connection come from the same run,
 * interleaved, so machine drift cancels (see the performance design notes).
 *
 *   npm run bench:mux                                full run (512 MiB bulk, 5 rounds)
 *   npm run bench:mux -- --quick                     a smoke run (64 MiB bulk, 2 rounds)
 *
 * Both ends pass the raw socket to WsTransport for corking, as kas and agentk do. The bulk figures
 * include the longest pause the reader saw: a writer that stalls shows there, not only in MB/s.
 *
 * Not a test: it asserts nothing about speed, only that every byte arrived.
 */
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { Session } from '../src/protocol/session.js';
import type { TunnelStream } from '../src/protocol/stream.js';
import type { MessageTransport } from '../src/protocol/transport.js';
import { WsTransport } from '../src/shared/ws-transport.js';

const MiB = 1024 * 1024;
/** Same message cap on both ends as the transport tests: above the 1 MiB default frame size, far below ws's 100 MiB. */
const MAX_PAYLOAD = 2 * MiB;
/** Bytes a plain-ws sender lets queue before it waits, like the session's default transport high-water mark. */
const BASELINE_HIGH_WATER = MiB;

interface Config {
  quick: boolean;
  rounds: number;
  bulkBytes: number;
  streams: number;
  sequential: number;
}

function parseArgs(argv: string[]): Config {
  const quick = argv.includes('--quick');
  return quick
    ? { quick, rounds: 2, bulkBytes: 64 * MiB, streams: 1000, sequential: 1000 }
    : { quick, rounds: 5, bulkBytes: 512 * MiB, streams: 1000, sequential: 1000 };
}

const config = parseArgs(process.argv.slice(2));

function transport(ws: WebSocket, socket: Socket): MessageTransport {
  return new WsTransport(ws, { socket });
}

// ---- connections ---------------------------------------------------------------------------

interface Loopback {
  server: http.Server;
  wss: WebSocketServer;
  port: number;
  close(): Promise<void>;
}

/** An http server on 127.0.0.1:0 whose upgrades go to `onSocket`, as kas accepts agents (noServer mode). */
async function listen(onSocket: (ws: WebSocket, socket: Socket) => void): Promise<Loopback> {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PAYLOAD, perMessageDeflate: false });
  const server = http.createServer();
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => onSocket(ws, socket as Socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    wss,
    port,
    async close() {
      for (const c of wss.clients) c.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Dials the loopback server; resolves with the open WebSocket and its raw socket (for corking). */
async function dial(port: number): Promise<{ ws: WebSocket; socket: Socket }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false, maxPayload: MAX_PAYLOAD });
  let socket: Socket | null = null;
  ws.once('upgrade', (res: http.IncomingMessage) => {
    socket = res.socket as Socket;
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  if (!socket) throw new Error('the WebSocket opened without an upgrade response');
  return { ws, socket };
}

interface SessionPair {
  client: Session;
  server: Session;
  close(): Promise<void>;
}

/** A client (agentk role) and a server (kas role) Session over one real ws connection, handshake done. */
async function sessionPair(): Promise<SessionPair> {
  let resolveServer!: (s: Session) => void;
  const serverReady = new Promise<Session>((resolve) => {
    resolveServer = resolve;
  });
  const loop = await listen((ws, socket) => resolveServer(new Session(transport(ws, socket), { role: 'server' })));
  const { ws, socket } = await dial(loop.port);
  const client = new Session(transport(ws, socket), { role: 'client', hello: { agentVersion: 'bench' } });
  const server = await serverReady;
  await Promise.all([client.ready, server.ready]);
  return {
    client,
    server,
    async close() {
      client.close();
      server.close();
      await loop.close();
    },
  };
}

// ---- measurements --------------------------------------------------------------------------

/** Writes `total` bytes of `chunk` repeats to a stream, honouring backpressure, then ends it. */
function writeBulk(stream: TunnelStream, chunk: Buffer, total: number): void {
  let left = total;
  const more = () => {
    while (left > 0) {
      const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= piece.length;
      if (!stream.write(piece)) {
        stream.once('drain', more);
        return;
      }
    }
    stream.end();
  };
  more();
}

/** Reads a stream to its end as fast as it can; resolves with the byte count and the longest pause between chunks. */
function drainCount(stream: TunnelStream): Promise<{ bytes: number; maxGapMs: number }> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let maxGapMs = 0;
    let last = performance.now();
    stream.on('data', (b: Buffer) => {
      const now = performance.now();
      maxGapMs = Math.max(maxGapMs, now - last);
      last = now;
      bytes += b.length;
    });
    stream.once('end', () => resolve({ bytes, maxGapMs }));
    stream.once('error', reject);
  });
}

interface BulkResult {
  /** 10^6 bytes per second. */
  mbps: number;
  /** Longest pause the reader saw between two chunks, ms: a stalled writer shows here. */
  maxGapMs: number;
}

/** One stream carrying `total` bytes; `down` = server→client. */
async function bulkOurs(total: number, down: boolean): Promise<BulkResult> {
  const pair = await sessionPair();
  try {
    const chunk = Buffer.alloc(MiB, 0x5a);
    let start = 0;
    let received: Promise<{ bytes: number; maxGapMs: number }>;
    if (down) {
      // The client asks, the server answers with `total` bytes: a large GET through the tunnel.
      pair.server.on('stream', (s) => {
        s.resume();
        s.reply({ status: 200 });
        writeBulk(s, chunk, total);
      });
      start = performance.now();
      received = drainCount(pair.client.openStream({ t: 'bench', path: '/bulk' }, { end: true }));
    } else {
      // The client streams `total` bytes to the server, which reads as fast as it can.
      received = new Promise((resolve, reject) => {
        pair.server.on('stream', (s) => {
          s.reply({ status: 200 }, { end: true });
          drainCount(s).then(resolve, reject);
        });
      });
      start = performance.now();
      const s = pair.client.openStream({ t: 'bench', path: '/bulk' });
      s.resume();
      writeBulk(s, chunk, total);
    }
    const { bytes, maxGapMs } = await received;
    const ms = performance.now() - start;
    if (bytes !== total) throw new Error(`bulk transfer lost bytes: sent ${total}, received ${bytes}`);
    return { mbps: total / 1e6 / (ms / 1000), maxGapMs };
  } finally {
    await pair.close();
  }
}

/** The same transfer as plain ws messages of 64 KiB, with the same sender-side backpressure. */
async function bulkPlainWs(total: number, down: boolean): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  let resolveAccepted!: (ws: WebSocket) => void;
  const accepted = new Promise<WebSocket>((resolve) => {
    resolveAccepted = resolve;
  });
  const loop = await listen((ws) => resolveAccepted(ws));
  const { ws } = await dial(loop.port);
  const serverWs = await accepted;
  try {
    const [sender, receiver] = down ? [serverWs, ws] : [ws, serverWs];
    const done = new Promise<number>((resolve) => {
      let n = 0;
      receiver.on('message', (data: RawData) => {
        n += (data as Buffer).length;
        if (n >= total) resolve(n);
      });
    });
    const start = performance.now();
    let left = total;
    const more = () => {
      while (left > 0) {
        const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
        left -= piece.length;
        if (sender.bufferedAmount + piece.length >= BASELINE_HIGH_WATER) {
          sender.send(piece, { binary: true, compress: false }, (err) => {
            if (!err) more();
          });
          return;
        }
        sender.send(piece, { binary: true, compress: false });
      }
    };
    more();
    const n = await done;
    const ms = performance.now() - start;
    if (n !== total) throw new Error(`plain ws transfer lost bytes: sent ${total}, received ${n}`);
    return total / 1e6 / (ms / 1000);
  } finally {
    ws.terminate();
    await loop.close();
  }
}

/** Opens `n` streams at once (small head, END in the OPEN); the server answers 100 bytes and END. Ms from first open to last close. */
async function burst(pair: SessionPair, n: number): Promise<number> {
  const start = performance.now();
  const closed: Promise<number>[] = [];
  for (let i = 0; i < n; i++) closed.push(smallRequest(pair.client, i));
  const bytes = await Promise.all(closed);
  const ms = performance.now() - start;
  if (bytes.some((b) => b !== 100)) throw new Error('a small stream did not receive its 100-byte body');
  return ms;
}

/** One small request/response stream; resolves with the body length once the stream closed. */
function smallRequest(client: Session, i: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = client.openStream({ t: 'bench', method: 'GET', path: `/small/${i}` }, { end: true });
    let n = 0;
    s.on('data', (b: Buffer) => {
      n += b.length;
    });
    s.once('error', reject);
    s.once('close', () => resolve(n));
  });
}

const SMALL_BODY = Buffer.alloc(100, 0x61);

function serveSmall(server: Session): void {
  server.on('stream', (s) => {
    s.resume();
    s.reply({ status: 200, headers: [['Content-Type', 'text/plain']] }, { data: SMALL_BODY, end: true });
  });
}

/** `n` request/response streams one after the other; latency percentiles in ms. */
async function sequential(pair: SessionPair, n: number): Promise<{ p50: number; p99: number }> {
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const bytes = await smallRequest(pair.client, i);
    lat.push(performance.now() - t0);
    if (bytes !== 100) throw new Error('a sequential stream did not receive its 100-byte body');
  }
  lat.sort((a, b) => a - b);
  return { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) };
}

// ---- statistics and output -----------------------------------------------------------------

function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i]!;
}

interface Summary {
  min: number;
  median: number;
  max: number;
  runs: number[];
}

function summarize(values: number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { min: round3(sorted[0]!), median: round3(median), max: round3(sorted[sorted.length - 1]!), runs: values.map(round3) };
}

const round3 = (v: number) => Math.round(v * 1000) / 1000;

function row(name: string, unit: string, s: Summary): string {
  const f = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(3)).padStart(9);
  return `${name.padEnd(56)} ${f(s.min)} ${f(s.median)} ${f(s.max)}  ${unit}`;
}

/** Whether ws found its native masking helper (it loads `bufferutil` the same way, silently). */
function bufferutilLoaded(): boolean {
  if (process.env.WS_NO_BUFFER_UTIL) return false;
  try {
    createRequire(import.meta.url)('bufferutil');
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const cfg = config;
  const cpus = os.cpus();
  const machine = {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    totalMemoryMiB: Math.round(os.totalmem() / MiB),
    bufferutil: bufferutilLoaded(),
  };
  console.log(`mux-bench${cfg.quick ? ' (quick)' : ''}: ${cfg.rounds} rounds, bulk ${cfg.bulkBytes / MiB} MiB, ${cfg.streams} concurrent streams, ${cfg.sequential} sequential streams`);
  console.log(`machine: ${machine.cpus} x ${machine.cpuModel}, node ${machine.node}, bufferutil ${machine.bufferutil ? 'loaded' : 'NOT loaded'}`);

  // Warm-up: JIT, socket paths, window growth code.
  await bulkOurs(32 * MiB, true);
  await bulkPlainWs(32 * MiB, true);
  {
    const pair = await sessionPair();
    serveSmall(pair.server);
    await burst(pair, 200);
    await sequential(pair, 200);
    await pair.close();
  }

  const r = {
    bulkDownOurs: [] as number[],
    bulkDownWs: [] as number[],
    bulkDownRatio: [] as number[],
    bulkDownMaxGapMs: [] as number[],
    bulkUpOurs: [] as number[],
    bulkUpWs: [] as number[],
    bulkUpRatio: [] as number[],
    bulkUpMaxGapMs: [] as number[],
    burstMs: [] as number[],
    seqP50: [] as number[],
    seqP99: [] as number[],
  };
  for (let round = 0; round < cfg.rounds; round++) {
    // Alternate which path goes first so slow drift does not favour one of them.
    const oursFirst = round % 2 === 0;
    for (const down of [true, false]) {
      let ours: BulkResult;
      let ws: number;
      if (oursFirst) {
        ours = await bulkOurs(cfg.bulkBytes, down);
        ws = await bulkPlainWs(cfg.bulkBytes, down);
      } else {
        ws = await bulkPlainWs(cfg.bulkBytes, down);
        ours = await bulkOurs(cfg.bulkBytes, down);
      }
      (down ? r.bulkDownOurs : r.bulkUpOurs).push(ours.mbps);
      (down ? r.bulkDownMaxGapMs : r.bulkUpMaxGapMs).push(ours.maxGapMs);
      (down ? r.bulkDownWs : r.bulkUpWs).push(ws);
      (down ? r.bulkDownRatio : r.bulkUpRatio).push(ours.mbps / ws);
    }
    const pair = await sessionPair();
    serveSmall(pair.server);
    r.burstMs.push(await burst(pair, cfg.streams));
    const seq = await sequential(pair, cfg.sequential);
    r.seqP50.push(seq.p50);
    r.seqP99.push(seq.p99);
    await pair.close();
    console.log(
      `round ${round + 1}/${cfg.rounds}: down ${r.bulkDownOurs[round]!.toFixed(0)} MB/s (ws ${r.bulkDownWs[round]!.toFixed(0)}), ` +
        `up ${r.bulkUpOurs[round]!.toFixed(0)} MB/s (ws ${r.bulkUpWs[round]!.toFixed(0)}), burst ${r.burstMs[round]!.toFixed(1)} ms, ` +
        `p50 ${seq.p50.toFixed(3)} ms, p99 ${seq.p99.toFixed(3)} ms, longest bulk pause ${Math.max(r.bulkDownMaxGapMs[round]!, r.bulkUpMaxGapMs[round]!).toFixed(0)} ms`,
    );
  }

  const results = {
    bulkDownMBps: summarize(r.bulkDownOurs),
    bulkDownPlainWsMBps: summarize(r.bulkDownWs),
    bulkDownRatio: summarize(r.bulkDownRatio),
    bulkDownMaxGapMs: summarize(r.bulkDownMaxGapMs),
    bulkUpMBps: summarize(r.bulkUpOurs),
    bulkUpPlainWsMBps: summarize(r.bulkUpWs),
    bulkUpRatio: summarize(r.bulkUpRatio),
    bulkUpMaxGapMs: summarize(r.bulkUpMaxGapMs),
    burstMs: summarize(r.burstMs),
    sequentialP50Ms: summarize(r.seqP50),
    sequentialP99Ms: summarize(r.seqP99),
  };
  console.log('');
  console.log(`${'figure'.padEnd(56)} ${'min'.padStart(9)} ${'median'.padStart(9)} ${'max'.padStart(9)}`);
  console.log(row('bulk server→client, one stream', 'MB/s', results.bulkDownMBps));
  console.log(row('bulk server→client, plain ws 64 KiB messages', 'MB/s', results.bulkDownPlainWsMBps));
  console.log(row('bulk server→client, ours ÷ plain ws', 'ratio', results.bulkDownRatio));
  console.log(row('bulk server→client, longest reader pause', 'ms', results.bulkDownMaxGapMs));
  console.log(row('bulk client→server, one stream', 'MB/s', results.bulkUpMBps));
  console.log(row('bulk client→server, plain ws 64 KiB messages', 'MB/s', results.bulkUpPlainWsMBps));
  console.log(row('bulk client→server, ours ÷ plain ws', 'ratio', results.bulkUpRatio));
  console.log(row('bulk client→server, longest reader pause', 'ms', results.bulkUpMaxGapMs));
  console.log(row(`${cfg.streams} concurrent small streams, first open→last close`, 'ms', results.burstMs));
  console.log(row(`${cfg.sequential} sequential small streams, p50`, 'ms', results.sequentialP50Ms));
  console.log(row(`${cfg.sequential} sequential small streams, p99`, 'ms', results.sequentialP99Ms));

  const date = new Date();
  const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}mux-${date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}.json`;
  const runConfig = { ...cfg, bulkChunkBytes: MiB, plainWsMessageBytes: 64 * 1024, maxPayload: MAX_PAYLOAD, smallBodyBytes: SMALL_BODY.length };
  writeFileSync(file, `${JSON.stringify({ benchmark: 'mux', date: date.toISOString(), machine, config: runConfig, results }, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
