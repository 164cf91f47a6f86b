/**
 * The benchmark's Node load generator, a separate process driven over IPC (child_process.fork) by
 * bench/run.ts. Requests/second and latency come from wrk, bulk from curl; this process does
 * what those tools cannot: stalled readers, a bulk reader beside them, bursts of concurrent
 * requests, a half-closing client.
 *
 * Messages in:  { id, job: 'stall' | 'holbg' | 'burst' | 'halfclose' | 'bulk' | 'timed' | 'release', ... }
 * Messages out: { id, ok: true, result } | { id, ok: false, error } | { id, event: 'ready', ... }
 */
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

type Headers = Record<string, string>;

interface StallJob { id: number; job: 'stall'; url: string; n: number; headers: Headers }
interface HolBgJob { id: number; job: 'holbg'; stallUrl: string; bulkUrl: string; headers: Headers }
interface BurstJob { id: number; job: 'burst'; url: string; n: number; headers: Headers; warmRepeats: number }
interface HalfCloseJob { id: number; job: 'halfclose'; host: string; port: number; path: string; headers: Headers }
interface BulkJob { id: number; job: 'bulk'; url: string; headers: Headers }
interface TimedJob { id: number; job: 'timed'; url: string; headers: Headers; seconds: number }
interface ReleaseJob { id: number; job: 'release' }
type Job = StallJob | HolBgJob | BurstJob | HalfCloseJob | BulkJob | TimedJob | ReleaseJob;

function send(message: unknown): void {
  process.send?.(message);
}

/** What a running stall or holbg job does when told to release. */
let release: (() => unknown) | null = null;

/** Opens a request and resolves with its response (head received). */
function get(url: string, headers: Headers, agent: http.Agent | false): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent }, (res) => resolve({ req, res }));
    req.once('error', reject);
  });
}

async function stall(job: StallJob): Promise<unknown> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: job.n + 1 });
  const opened: { req: http.ClientRequest; res: http.IncomingMessage }[] = [];
  const statuses: number[] = [];
  const results = await Promise.allSettled(Array.from({ length: job.n }, () => get(job.url, job.headers, agent)));
  let failed = 0;
  for (const r of results) {
    if (r.status === 'rejected') {
      failed++;
      continue;
    }
    // A stopped reader: Node stops reading the socket once the response's buffer is full.
    r.value.res.pause();
    r.value.res.on('error', () => undefined);
    r.value.req.on('error', () => undefined);
    statuses.push(r.value.res.statusCode ?? 0);
    opened.push(r.value);
  }
  send({ id: job.id, event: 'ready', opened: opened.length, failed, statuses: [...new Set(statuses)] });
  await new Promise<void>((resolve) => {
    release = resolve;
  });
  for (const o of opened) o.req.destroy();
  agent.destroy();
  return { opened: opened.length, failed };
}

async function holbg(job: HolBgJob): Promise<unknown> {
  const stalled = await get(job.stallUrl, job.headers, false);
  stalled.res.pause();
  stalled.res.on('error', () => undefined);
  stalled.req.on('error', () => undefined);
  const bulk = await get(job.bulkUrl, job.headers, false);
  bulk.res.on('error', () => undefined);
  bulk.req.on('error', () => undefined);
  let bytes = 0;
  bulk.res.on('data', (d: Buffer) => (bytes += d.length));
  await new Promise((r) => setTimeout(r, 300));
  const start = performance.now();
  const startBytes = bytes;
  send({ id: job.id, event: 'ready', stalledStatus: stalled.res.statusCode, bulkStatus: bulk.res.statusCode, bulkBytesBefore: bytes });
  await new Promise<void>((resolve) => {
    release = resolve;
  });
  const seconds = (performance.now() - start) / 1000;
  const moved = bytes - startBytes;
  stalled.req.destroy();
  bulk.req.destroy();
  return { bulkBytes: moved, seconds, bulkMBps: moved / seconds / 1e6 };
}

async function burstOnce(url: string, n: number, headers: Headers, agent: http.Agent): Promise<{ ms: number; ok: number; failed: number; statuses: number[] }> {
  const t0 = performance.now();
  const statuses = new Set<number>();
  let ok = 0;
  let failed = 0;
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          const req = http.get(url, { headers, agent }, (res) => {
            statuses.add(res.statusCode ?? 0);
            res.resume();
            res.once('end', () => {
              if (res.statusCode === 200) ok++;
              else failed++;
              resolve();
            });
            res.once('error', () => {
              failed++;
              resolve();
            });
          });
          req.once('error', () => {
            failed++;
            resolve();
          });
        }),
    ),
  );
  return { ms: performance.now() - t0, ok, failed, statuses: [...statuses] };
}

/**
 * `n` concurrent requests: first on fresh connections (cold: includes n TCP accepts), then again
 * `warmRepeats` times on the same n kept-alive connections (warm: only the streams are new).
 */
async function burst(job: BurstJob): Promise<unknown> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: job.n, maxFreeSockets: job.n, keepAliveMsecs: 60_000 });
  try {
    const cold = await burstOnce(job.url, job.n, job.headers, agent);
    const warm = [];
    for (let i = 0; i < job.warmRepeats; i++) warm.push(await burstOnce(job.url, job.n, job.headers, agent));
    return { cold, warm };
  } finally {
    agent.destroy();
  }
}

/** Sends a request with a body, half-closes (FIN), and waits for the whole reply. */
function halfclose(job: HalfCloseJob): Promise<unknown> {
  return new Promise((resolve) => {
    const body = 'hello, half-closed world';
    const t0 = performance.now();
    const socket = net.connect({ host: job.host, port: job.port, allowHalfOpen: true });
    let reply = '';
    const finish = (why: string) => {
      clearTimeout(timer);
      socket.destroy();
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(reply)?.[1] ?? 0);
      const bodyText = reply.split('\r\n\r\n').slice(1).join('\r\n\r\n');
      const pass = status === 200 && bodyText.includes(`"received":${body.length}`);
      resolve({ pass, status, why, ms: performance.now() - t0, reply: reply.slice(0, 300) });
    };
    const timer = setTimeout(() => finish('no complete reply within 5 s'), 5000);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      reply += d;
      const headEnd = reply.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(reply)?.[1];
      if (headEnd >= 0 && length !== undefined && reply.length >= headEnd + 4 + Number(length)) finish('complete reply');
    });
    socket.on('end', () => finish('server closed'));
    socket.on('error', (err) => finish(`error: ${err.message}`));
    socket.on('connect', () => {
      const extra = Object.entries(job.headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      socket.end(`POST ${job.path} HTTP/1.1\r\nHost: ${job.host}:${job.port}\r\n${extra}Content-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    });
  });
}

/** Fallback bulk reader when curl is not installed. */
async function bulk(job: BulkJob): Promise<unknown> {
  const t0 = performance.now();
  const { res } = await get(job.url, job.headers, false);
  let bytes = 0;
  res.on('data', (d: Buffer) => (bytes += d.length));
  await new Promise<void>((resolve, reject) => {
    res.once('end', resolve);
    res.once('error', reject);
  });
  const seconds = (performance.now() - t0) / 1000;
  return { status: res.statusCode, bytes, seconds };
}

/** Reads an endless response for `seconds`; returns the bytes and the bytes of each second (window growth shows there). */
async function timed(job: TimedJob): Promise<unknown> {
  const { req, res } = await get(job.url, job.headers, false);
  if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
  const t0 = performance.now();
  const buckets: number[] = [];
  let bytes = 0;
  res.on('data', (d: Buffer) => {
    bytes += d.length;
    const i = Math.floor((performance.now() - t0) / 1000);
    if (i < job.seconds) buckets[i] = (buckets[i] ?? 0) + d.length;
  });
  res.on('error', () => undefined);
  req.on('error', () => undefined);
  await new Promise((r) => setTimeout(r, job.seconds * 1000));
  const counted = buckets.reduce((a, b) => a + (b ?? 0), 0);
  req.destroy();
  return { bytes: counted, seconds: job.seconds, buckets: Array.from({ length: job.seconds }, (_, i) => buckets[i] ?? 0), totalBytes: bytes };
}

process.on('message', (job: Job) => {
  if (job.job === 'release') {
    const r = release;
    release = null;
    r?.();
    return;
  }
  const work = job.job === 'stall' ? stall(job) : job.job === 'holbg' ? holbg(job) : job.job === 'burst' ? burst(job) : job.job === 'halfclose' ? halfclose(job) : job.job === 'timed' ? timed(job) : bulk(job);
  work.then(
    (result) => send({ id: job.id, ok: true, result }),
    (err: unknown) => send({ id: job.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
