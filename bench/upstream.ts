/**
 * The benchmark's upstream: a small HTTP server standing in for the Kubernetes API server, run as
 * its own process. It logs one JSON line `{"listener":"upstream","address":"host:port"}` once bound.
 *
 *   GET  /small               a ~100-byte JSON body with Content-Length (a small API answer)
 *   GET  /big?bytes=N         N bytes with Content-Length, written from one preallocated block
 *                             (no copies), honouring backpressure
 *   GET  /stream[?bytes=N]    chunked, 64 KiB pieces for ever (or N bytes), honouring backpressure:
 *                             the upstream of a stalled reader keeps sending as long as it is let
 *   POST /halfclose           reads the whole body, waits 100 ms, answers {"received":<bytes>}:
 *                             a client that half-closed after its body still gets the reply
 *   GET  /slow?ms=N           answers /small's body after N ms
 *
 *   node dist/bench/upstream.js [--listen 127.0.0.1:0]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const BLOCK = Buffer.alloc(1024 * 1024);
for (let i = 0; i < BLOCK.length; i++) BLOCK[i] = 97 + (i % 26);
const STREAM_PIECE = BLOCK.subarray(0, 64 * 1024);
const SMALL = Buffer.from(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Success', code: 200, message: 'bench: a small answer' }));

function listenArg(): { host: string; port: number } {
  const i = process.argv.indexOf('--listen');
  const text = i >= 0 ? process.argv[i + 1] ?? '' : '127.0.0.1:0';
  const colon = text.lastIndexOf(':');
  return { host: text.slice(0, colon) || '127.0.0.1', port: Number(text.slice(colon + 1)) };
}

/** Writes `total` bytes (Infinity: until the client goes away) from BLOCK, waiting for 'drain' when asked. */
function pour(res: http.ServerResponse, total: number, piece: Buffer): void {
  let left = total;
  let closed = false;
  res.once('close', () => (closed = true));
  const more = () => {
    while (!closed && left > 0) {
      const chunk = left >= piece.length ? piece : piece.subarray(0, left);
      left -= chunk.length;
      if (!res.write(chunk)) {
        res.once('drain', more);
        return;
      }
    }
    if (!closed) res.end();
  };
  more();
}

function sendSmall(res: http.ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': SMALL.length });
  res.end(SMALL);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://upstream');
  const path = url.pathname;
  if (path === '/halfclose') {
    let received = 0;
    req.on('data', (d: Buffer) => (received += d.length));
    req.on('end', () => {
      setTimeout(() => {
        const body = Buffer.from(JSON.stringify({ received }));
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
        res.end(body);
      }, 100);
    });
    return;
  }
  req.resume();
  if (path === '/small') return sendSmall(res);
  if (path === '/big') {
    const bytes = Number(url.searchParams.get('bytes') ?? 1024 * 1024);
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': bytes });
    return pour(res, bytes, BLOCK);
  }
  if (path === '/stream') {
    const bytes = url.searchParams.has('bytes') ? Number(url.searchParams.get('bytes')) : Infinity;
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
    return pour(res, bytes, STREAM_PIECE);
  }
  if (path === '/slow') {
    const ms = Number(url.searchParams.get('ms') ?? 100);
    const timer = setTimeout(() => sendSmall(res), ms);
    res.once('close', () => clearTimeout(timer));
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 10 });
  res.end('not found\n');
});
// Keep a half-closed client's request alive until its reply is out (Node's default ends the socket).
(server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;

const { host, port } = listenArg();
server.listen({ host, port, backlog: 4096 }, () => {
  const a = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ listener: 'upstream', address: `${a.address}:${a.port}` })}\n`);
});
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
});
