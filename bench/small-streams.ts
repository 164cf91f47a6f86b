/**
 * What a small request costs each end of the tunnel, without HTTP on either side: a WebSocket
 * server session (kas's role: it opens the streams) and a WebSocket client session (agentk's role:
 * it dials, masks what it sends, and answers every stream with a small head, 100 bytes and the end)
 * in two processes. Streams run `--concurrency` at a time; each run prints the CPU per stream of both
 * processes and the streams per second, medians over rounds.
 *
 *   npm run build && node dist/bench/small-streams.js [--rounds 5] [--streams 20000] [--concurrency 32]
 *
 * Not a test: it prints numbers. Compare two builds by running this file from each compiled tree.
 */
import { fork } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { Session } from '../src/protocol/session.js';
import { WsTransport } from '../src/shared/ws-transport.js';
import { optionValues, runMain } from './lib/cli.js';
import { median } from './lib/stats.js';

const MAX_PAYLOAD = 4 * 1024 * 1024;
const BODY = Buffer.alloc(100, 0x61);

/** The agentk side: dials, answers every stream, and reports its CPU time when asked. */
async function answerer(port: number): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false, maxPayload: MAX_PAYLOAD });
  let socket: Socket | undefined;
  ws.once('upgrade', (res) => (socket = res.socket as Socket));
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  const session = new Session(new WsTransport(ws, { socket }), { role: 'client' });
  session.on('stream', (s) => {
    s.resume();
    s.reply({ status: 200, headers: [['content-type', 'text/plain']] }, { data: BODY, end: true });
  });
  process.on('message', () => process.send!(process.cpuUsage()));
}

function cpuMs(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1000;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const answerPort = optionValues(argv, '--answer')[0];
  if (answerPort) return answerer(Number(answerPort));
  const rounds = Number(optionValues(argv, '--rounds')[0] ?? 5);
  const streams = Number(optionValues(argv, '--streams')[0] ?? 20_000);
  const concurrency = Number(optionValues(argv, '--concurrency')[0] ?? 32);
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_PAYLOAD });
  const server = http.createServer();
  const accepted = new Promise<Session>((resolve) =>
    server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => resolve(new Session(new WsTransport(ws, { socket: socket as Socket }), { role: 'server' })))),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  // The answerer runs with this process's Node options (--cpu-prof profiles both ends).
  const child = fork(fileURLToPath(import.meta.url), ['--answer', String((server.address() as AddressInfo).port)], { execArgv: process.execArgv });
  const childCpu = () => new Promise<number>((r) => (child.once('message', (u) => r(cpuMs(u as NodeJS.CpuUsage))), child.send('cpu')));
  try {
    const session = await accepted;
    await session.ready;
    const one = (i: number) =>
      new Promise<void>((resolve, reject) => {
        const s = session.openStream({ method: 'GET', path: `/small/${i}` }, { end: true });
        let got = 0;
        s.on('data', (b: Buffer) => (got += b.byteLength));
        s.on('error', reject);
        s.on('end', () => (got === BODY.length ? resolve() : reject(new Error(`stream ${i}: ${got} bytes`))));
      });
    const run = async (n: number) => {
      let next = 0;
      const worker = async () => {
        while (next < n) await one(next++);
      };
      const [c0, o0, t0] = [await childCpu(), process.cpuUsage(), performance.now()];
      await Promise.all(Array.from({ length: concurrency }, worker));
      const seconds = (performance.now() - t0) / 1000;
      const [c1, o1] = [await childCpu(), process.cpuUsage(o0)];
      return { opener: (cpuMs(o1) * 1000) / n, answerer: ((c1 - c0) * 1000) / n, rate: n / seconds };
    };
    await run(Math.min(streams, 5000)); // warm-up
    const samples = [];
    for (let i = 0; i < rounds; i++) samples.push(await run(streams));
    const f = (xs: number[]) => `${median(xs).toFixed(1)} [${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}]`;
    console.log(`${streams} small streams per round, ${concurrency} at a time, medians over ${rounds} rounds [min–max]`);
    console.log(`  CPU µs per stream: opener (kas's role) ${f(samples.map((s) => s.opener))}, answerer (agentk's role, masks) ${f(samples.map((s) => s.answerer))}`);
    console.log(`  streams per second ${median(samples.map((s) => s.rate)).toFixed(0)}`);
    session.close();
  } finally {
    child.kill();
    server.close();
  }
}

runMain(main);
