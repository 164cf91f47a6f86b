/**
 * What sending bulk data costs a WebSocket client (agentk's side of the tunnel): CPU per 100 MB and
 * MB/s of one stream whose chunks are handed over (`handsOverWrites`: masked where they lie) against
 * one whose chunks are kept (masked into a new frame buffer, one copy). The receiving session runs
 * in a child process, so the CPU measured is the sender's alone; the two kinds alternate within each
 * round, and medians over rounds are printed. Each chunk is a fresh 64 KiB buffer, as a socket read
 * of the API server's answer is.
 *
 *   npm run build && node dist/bench/client-send.js [--rounds 6] [--mib 512]
 *
 * Not a test: it prints numbers (run it under `taskset -c 0` to put both ends on one core).
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
const CHUNK = 64 * 1024;

/** The receiving end: a server session that reads and discards every stream. */
function sink(): void {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_PAYLOAD });
  const server = http.createServer();
  server.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => {
      const session = new Session(new WsTransport(ws, { socket: socket as Socket }), { role: 'server' });
      session.on('stream', (s) => {
        s.reply({ status: 200 });
        s.resume();
        s.on('end', () => s.end());
      });
    }),
  );
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as AddressInfo).port));
}

interface Sample {
  cpuMsPer100MB: number;
  mbps: number;
}

async function send(client: Session, handsOver: boolean, bytes: number): Promise<Sample> {
  const s = client.openStream({ path: '/bulk' });
  s.handsOverWrites = handsOver;
  s.resume();
  const ended = new Promise((r) => s.once('end', r));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let sent = 0; sent < bytes; sent += CHUNK) {
    const chunk = Buffer.allocUnsafe(CHUNK);
    chunk[0] = sent & 0xff;
    if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
  }
  s.end();
  await ended;
  const cpu = process.cpuUsage(cpu0);
  const seconds = (performance.now() - t0) / 1000;
  return { cpuMsPer100MB: ((cpu.user + cpu.system) / 1000) * (100e6 / bytes), mbps: bytes / 1e6 / seconds };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--sink')) return sink();
  const rounds = Number(optionValues(argv, '--rounds')[0] ?? 6);
  const bytes = Number(optionValues(argv, '--mib')[0] ?? 512) * 1024 * 1024;
  const child = fork(fileURLToPath(import.meta.url), ['--sink']);
  try {
    const port = await new Promise<number>((r) => child.once('message', (m) => r(Number(m))));
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false, maxPayload: MAX_PAYLOAD });
    let socket: Socket | undefined;
    ws.once('upgrade', (res) => (socket = res.socket as Socket));
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    const client = new Session(new WsTransport(ws, { socket }), { role: 'client' });
    await client.ready;
    for (const h of [false, true]) await send(client, h, 64 * 1024 * 1024); // warm-up
    const samples: Record<'kept' | 'handed over', Sample[]> = { kept: [], 'handed over': [] };
    for (let i = 0; i < rounds; i++) {
      for (const h of i % 2 ? [true, false] : [false, true]) samples[h ? 'handed over' : 'kept'].push(await send(client, h, bytes));
    }
    console.log(`client send, ${bytes / 1024 / 1024} MiB per run, medians over ${rounds} rounds [min–max]`);
    for (const [name, xs] of Object.entries(samples)) {
      const cpu = xs.map((x) => x.cpuMsPer100MB);
      console.log(`  ${name.padEnd(12)} CPU ${median(cpu).toFixed(1)} ms/100MB [${Math.min(...cpu).toFixed(1)}–${Math.max(...cpu).toFixed(1)}], ${median(xs.map((x) => x.mbps)).toFixed(0)} MB/s`);
    }
    client.close();
  } finally {
    child.kill();
  }
}

runMain(main);
