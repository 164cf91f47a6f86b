/**
 * Soak: a real kas with several agentk for a bounded time, under a mix of short requests, uploads,
 * watches and cancellations. Reports requests served, errors (only provoked cancellations are
 * expected, and they are counted apart), and memory and handle counts at start, middle and end.
 * Everything runs in this process, on loopback.
 *
 * With `--faults`: several kas replicas sharing a real redis-server, behind load balancers, each
 * agentk behind its own link (a fault proxy), and a fault every `--fault-interval` seconds in turn:
 * kill and restart an agentk, SIGTERM (graceful shutdown) and restart a kas replica, restart Redis,
 * cut an agent's link. Each failed request is explained by a fault whose window it overlapped, if
 * that fault can cause it (bench/lib/soak-classify.ts), or else counted as unexplained: the run
 * exits 1 on any unexplained error or a fault the system did not recover from.
 *
 *   npm run soak -- [--duration 120] [--agents 4] [--concurrency 16]
 *                   [--faults [--replicas 3] [--fault-interval 10] [--settle 5]]
 */
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import https from 'node:https';
import { startFakeKubeApi } from '../test/support/fake-kube-api.js';
import { explain, FAULT_KINDS, type Failure, type FailureKind, type FaultKind, type FaultWindow } from './lib/soak-classify.js';
import { startTopology, type SoakTopology } from './lib/soak-topology.js';
import { numberFlag } from './lib/sequential-gets.js';

const DURATION_S = numberFlag('duration', 120);
const AGENTS = numberFlag('agents', 4);
const CONCURRENCY = numberFlag('concurrency', 16);
const FAULTS = process.argv.includes('--faults');
const REPLICAS = FAULTS ? Math.max(2, numberFlag('replicas', 3)) : 1;
const FAULT_INTERVAL_S = numberFlag('fault-interval', 10);
const SETTLE_S = numberFlag('settle', 5);
/** A request with no end after this long is "hung" (longer than kas's agent_wait_timeout, 20 s). */
const REQUEST_TIMEOUT_MS = 45_000;
/** How long an agent, its link or Redis stays away in a fault. */
const OUTAGE_MS = 3000;
/** The drain grace of a replica's graceful shutdown. */
const GRACE_MS = 5000;

interface Sample {
  at: string;
  rssMb: number;
  heapMb: number;
  handles: number;
  /** Active handles by type (TCPSocketWrap, Timeout, ...). */
  byType: Record<string, number>;
  sessions: number;
}

function sample(label: string, sessions: number): Sample {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  const resources = process.getActiveResourcesInfo();
  const byType: Record<string, number> = {};
  for (const r of resources) byType[r] = (byType[r] ?? 0) + 1;
  return { at: label, rssMb: m.rss / 2 ** 20, heapMb: m.heapUsed / 2 ** 20, handles: resources.length, byType, sessions };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs one fault after another, each `intervalMs` after the previous one began, until `stopAt`. */
async function runFaults(topology: SoakTopology, windows: FaultWindow[], stopAt: number, isStopped: () => boolean): Promise<void> {
  let n = 0;
  while (!isStopped()) {
    const next = Date.now() + FAULT_INTERVAL_S * 1000;
    await sleep(Math.min(FAULT_INTERVAL_S * 1000, Math.max(0, stopAt - Date.now())));
    if (isStopped() || Date.now() >= stopAt) return;
    const kind = FAULT_KINDS[n % FAULT_KINDS.length]!;
    const round = Math.floor(n / FAULT_KINDS.length);
    n++;
    const window: FaultWindow = { kind, start: Date.now(), end: null, detail: '' };
    windows.push(window);
    let problem: string | null;
    switch (kind) {
      case 'agent-kill': {
        const i = round % AGENTS;
        window.agentId = i + 1;
        window.detail = `agentk ${i + 1} killed, back after ${OUTAGE_MS} ms`;
        problem = await topology.killAgent(i, OUTAGE_MS);
        break;
      }
      case 'link-cut': {
        const i = (round + 1) % AGENTS;
        window.agentId = i + 1;
        window.detail = `agent ${i + 1}'s link cut for ${OUTAGE_MS} ms`;
        problem = await topology.cutLink(i, OUTAGE_MS);
        break;
      }
      case 'kas-restart': {
        const i = round % REPLICAS;
        window.detail = `kas replica ${i} shut down (grace ${GRACE_MS} ms) and started again`;
        problem = await topology.restartReplica(i, GRACE_MS);
        break;
      }
      case 'redis-restart':
        window.detail = `redis-server killed, started again after ${OUTAGE_MS} ms`;
        problem = await topology.restartRedis(OUTAGE_MS);
        break;
    }
    window.end = Date.now();
    if (problem) window.problem = problem;
    await sleep(Math.max(0, next - Date.now()));
  }
}

async function main(): Promise<void> {
  const upstream = await startFakeKubeApi({
    handler: (req, res) => {
      const url = new URL(req.url!, 'https://x');
      if (url.pathname === '/watch') {
        res.writeHead(200);
        const t = setInterval(() => res.write('{"type":"MODIFIED"}\n'), 50);
        res.on('close', () => clearInterval(t));
        return;
      }
      if (url.pathname === '/big') {
        res.writeHead(200);
        const block = Buffer.alloc(64 * 1024, 1);
        const pump = () => {
          while (!res.destroyed && res.write(block));
        };
        res.on('drain', pump);
        pump();
        return;
      }
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(`got ${n}`));
    },
    record: false,
  });
  let topology: SoakTopology | null = null;
  const onSignal = () => {
    // Stop what was started (Redis is also killed by its exit hook), then go.
    void (topology?.close() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let exitCode: number;
  try {
    topology = await startTopology({ upstream, agents: AGENTS, replicas: REPLICAS, faults: FAULTS });
    exitCode = await soak(topology);
  } finally {
    await topology?.close();
    await upstream.close();
  }
  process.exit(exitCode);
}

async function soak(topology: SoakTopology): Promise<number> {
  const httpAgent = new https.Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });
  const counts = { total: 0, served: 0, uploads: 0, watches: 0, cancelled: 0 };
  const failures: Failure[] = [];

  /** One request; `onResponse` settles it with `ok()` or `fail(kind)`; whatever it leaves open is a failure. */
  const request = (
    op: string,
    agentId: number,
    method: string,
    path: string,
    body: Buffer | null,
    onResponse: (res: http.IncomingMessage, settle: { ok(): void; fail(kind: FailureKind, detail?: string): void; destroy(): void }) => void,
  ) =>
    new Promise<void>((resolve) => {
      counts.total++;
      const start = Date.now();
      let settled = false;
      let destroyedByUs = false;
      const finish = (failure?: { kind: FailureKind; code?: string; detail: string }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (failure) failures.push({ op, agentId, start, end: Date.now(), ...failure });
        resolve();
      };
      const req = https.request(
        new URL(path, topology.proxyUrl),
        { method, agent: httpAgent, ca: topology.proxyCa, headers: { authorization: topology.bearer(agentId), ...(body && { 'content-length': body.length }) } },
        (res) => {
          res.on('error', () => undefined); // a cut response: its 'close' below tells what happened
          if (res.statusCode !== 200) {
            let text = '';
            res.setEncoding('utf8').on('data', (d: string) => (text += d.slice(0, 300 - text.length)));
            res.on('close', () => finish({ kind: 'status', code: String(res.statusCode), detail: text.replace(/\s+/g, ' ') }));
            return;
          }
          onResponse(res, {
            ok: () => finish(),
            fail: (kind, detail = '') => finish({ kind, detail }),
            destroy: () => {
              destroyedByUs = true;
              req.destroy();
            },
          });
          res.on('close', () => {
            if (!res.complete && !destroyedByUs) finish({ kind: op === 'watch' ? 'watch-cut' : 'truncated', detail: 'the response closed before its end' });
            // A handler that settles later (a watch's timer) settles; one that never does is a bug here.
            setImmediate(() => finish({ kind: 'truncated', detail: 'the response closed unsettled' }));
          });
        },
      );
      const timer = setTimeout(() => {
        finish({ kind: 'hung', detail: `no end within ${REQUEST_TIMEOUT_MS} ms` });
        destroyedByUs = true;
        req.destroy();
      }, REQUEST_TIMEOUT_MS);
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (!destroyedByUs) finish({ kind: 'client-error', code: err.code ?? err.message, detail: err.message });
      });
      req.on('close', () => setImmediate(() => (destroyedByUs ? finish() : undefined)));
      req.end(body ?? undefined);
    });

  const upload = randomBytes(256 * 1024);
  const start = Date.now();
  const deadline = start + DURATION_S * 1000;
  const samples: Sample[] = [sample('start', topology.sessions())];
  const middle = setTimeout(() => samples.push(sample('middle', topology.sessions())), (DURATION_S * 1000) / 2);
  const windows: FaultWindow[] = [];
  let loadDone = false;
  // No fault begins in the last stretch: the run ends on a whole system.
  const faults = FAULTS ? runFaults(topology, windows, deadline - (SETTLE_S + 10) * 1000, () => loadDone) : Promise.resolve();

  const worker = async () => {
    while (Date.now() < deadline) {
      const agentId = topology.agentIds[Math.floor(Math.random() * topology.agentIds.length)]!;
      const r = Math.random();
      if (r < 0.6) {
        await request('get', agentId, 'GET', '/api/v1/pods', null, (res, s) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => (text += d));
          res.on('end', () => (text === 'got 0' ? (counts.served++, s.ok()) : s.fail('body-mismatch', text.slice(0, 100))));
        });
      } else if (r < 0.75) {
        await request('upload', agentId, 'POST', '/api/v1/configmaps', upload, (res, s) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => (text += d));
          res.on('end', () => (text === `got ${upload.length}` ? (counts.served++, counts.uploads++, s.ok()) : s.fail('body-mismatch', text.slice(0, 100))));
        });
      } else if (r < 0.85) {
        await request('watch', agentId, 'GET', '/watch?watch=1', null, (res, s) => {
          let events = 0;
          res.on('data', () => events++);
          const t = setTimeout(
            () => {
              if (events > 0) {
                counts.watches++;
                counts.served++;
                s.destroy();
                s.ok();
              } else {
                s.destroy();
                s.fail('watch-no-event', 'no event');
              }
            },
            200 + Math.random() * 1500,
          );
          res.on('close', () => clearTimeout(t));
        });
      } else {
        await request('cancel', agentId, 'GET', '/big', null, (res, s) => {
          res.once('data', () => {
            counts.cancelled++;
            s.destroy();
            s.ok();
          });
        });
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  loadDone = true;
  await faults;
  clearTimeout(middle);
  httpAgent.destroy();
  await sleep(1000);
  samples.push(sample('end', topology.sessions()));
  if (FAULTS) {
    // Timers that kas started for requests of the last fault (an agent wait runs up to 20 s) and
    // connections in their close handshakes end by themselves: what is left after them stays.
    await sleep(25_000);
    samples.push(sample('end+25s', topology.sessions()));
  }

  // Classify.
  const settleMs = SETTLE_S * 1000;
  const explained = new Map<FaultKind, Map<string, number>>();
  const explainedSample = new Map<string, string>();
  const unexplained: Failure[] = [];
  for (const f of failures) {
    const fault = explain(f, windows, settleMs);
    const label = `${f.op} ${f.kind}${f.code ? ` ${f.code}` : ''}`;
    if (!fault) {
      unexplained.push(f);
      continue;
    }
    const byLabel = explained.get(fault.kind) ?? new Map<string, number>();
    byLabel.set(label, (byLabel.get(label) ?? 0) + 1);
    if (!explainedSample.has(`${fault.kind} ${label}`)) explainedSample.set(`${fault.kind} ${label}`, f.detail.slice(0, 160));
    explained.set(fault.kind, byLabel);
  }
  const problems = windows.filter((w) => w.problem);

  const ok = counts.served + counts.cancelled;
  console.log(`soak: ${DURATION_S} s, ${AGENTS} agents, ${CONCURRENCY} concurrent clients${FAULTS ? `, ${REPLICAS} kas replicas with Redis, a fault every ${FAULT_INTERVAL_S} s (settle ${SETTLE_S} s)` : ''}`);
  console.log(`requests ${counts.total}, ok ${ok}: served ${counts.served} (uploads ${counts.uploads}, watches ${counts.watches}), provoked cancellations ${counts.cancelled}`);
  if (FAULTS) {
    console.log('\nfaults injected:');
    for (const kind of FAULT_KINDS) {
      const ws = windows.filter((w) => w.kind === kind);
      const durations = ws.map((w) => (w.end ?? Date.now()) - w.start);
      const errs = [...(explained.get(kind)?.values() ?? [])].reduce((a, b) => a + b, 0);
      console.log(`  ${kind.padEnd(14)} ${String(ws.length).padStart(3)}  until whole again ${durations.length ? `${Math.min(...durations)}–${Math.max(...durations)} ms` : '-'}  errors explained ${errs}`);
      for (const [label, count] of explained.get(kind) ?? []) console.log(`      ${String(count).padStart(5)}  ${label}  (e.g. ${explainedSample.get(`${kind} ${label}`)})`);
    }
    for (const w of windows) console.log(`  +${((w.start - start) / 1000).toFixed(1).padStart(6)} s  ${w.kind.padEnd(14)} ${w.detail}${w.problem ? `  PROBLEM: ${w.problem}` : ''}`);
  }
  const explainedTotal = failures.length - unexplained.length;
  console.log(`\nerrors ${failures.length}: explained by a fault ${explainedTotal}, unexplained ${unexplained.length}`);
  for (const f of unexplained.slice(0, 15)) {
    console.log(`  unexplained: +${((f.start - start) / 1000).toFixed(1)}–${((f.end - start) / 1000).toFixed(1)} s agent ${f.agentId} ${f.op} ${f.kind}${f.code ? ` ${f.code}` : ''}: ${f.detail}`);
  }
  for (const s of samples) console.log(`${s.at.padEnd(7)} rss ${s.rssMb.toFixed(1)} MB, heap ${s.heapMb.toFixed(1)} MB, active handles ${s.handles} ${JSON.stringify(s.byType)}, agent sessions ${s.sessions}`);
  const logs = topology.logSummary();
  if (logs.length) {
    console.log('\nkas warnings and errors (level, count, message):');
    for (const l of logs.slice(0, 12)) console.log(`  ${l.level} ${String(l.count).padStart(5)}  ${l.msg}`);
  }
  for (const p of problems) console.log(`PROBLEM: ${p.kind} at +${((p.start - start) / 1000).toFixed(1)} s: ${p.problem}`);
  return unexplained.length === 0 && problems.length === 0 ? 0 : 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
