/**
 * Cluster events: (1) the time from an Event's creation (the API POST) to its arrival on a kas
 * watch (`GET /api/v1/agents/1/events?watch=true`), over N events, through a real agentk and kas
 * in this process and a real kube-apiserver (e2e/support/cluster.ts; `--fake` uses the fake API
 * server of the tests instead); (2) kas's memory per agent with a full events ring: the heap growth
 * of N agents' rings filled to agent.events.ring_size, divided by N, for typical and largest events.
 *
 *   npm run bench:events [-- --events 1000 --pace-ms 20 --agents 1000 --fake]
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { EventStore } from '../src/broker/cluster-events/event-store.js';
import { MemoryFanOut } from '../src/broker/cluster-events/fan-out.js';
import { ClusterEventsHub } from '../src/broker/cluster-events/hub.js';
import { ClusterEventsMetrics } from '../src/broker/cluster-events/metrics.js';
import type { ClusterEventInput } from '../src/broker/cluster-events/service.js';
import { createLogger } from '../src/shared/logger.js';
import { createKubeEvent, watchEvents, type KubeTarget } from '../test/support/events-api.js';
import { gitlabToKasJwt } from '../test/support/fake-gitlab.js';
import { startFakeKubeApi } from '../test/support/fake-kube-api.js';
import { startStack } from '../test/support/stack.js';
import { waitFor } from '../test/support/wait.js';
import { kubeApiserverBinary, startCluster } from '../e2e/support/cluster.js';
import { numberFlag } from './lib/sequential-gets.js';

const EVENTS = numberFlag('events', 1000);
const PACE_MS = numberFlag('pace-ms', 20);
const AGENTS = numberFlag('agents', 1000);
const RING = numberFlag('ring', 200);
const FAKE = process.argv.includes('--fake') || !existsSync(kubeApiserverBinary());

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function latency(): Promise<Record<string, unknown>> {
  const cluster = FAKE ? null : await startCluster();
  const fake = FAKE ? await startFakeKubeApi({ record: false }) : null;
  const kube: KubeTarget = cluster ? { url: cluster.url, caPem: cluster.caPem, token: cluster.adminToken } : { url: fake!.url, caPem: fake!.caPem, token: fake!.token };
  const dir = mkdtempSync(join(os.tmpdir(), 'events-bench-'));
  mkdirSync(join(dir, 'agent-one'));
  writeFileSync(join(dir, 'agent-one', 'config.yaml'), 'observability: {events: {types: [Warning], rate_limit: 1000, burst: 10000}}\n');
  const secret = randomBytes(32);
  writeFileSync(join(dir, 'api.secret'), secret.toString('base64'));
  const stack = await startStack({
    upstream: kube,
    agent: { clusterEvents: {} },
    kas: {
      api: { listen: { address: '127.0.0.1:0', authentication_secret_file: join(dir, 'api.secret') } },
      standalone: { config_dir: dir },
      agent: { events: { rate_limit: 100_000, burst: 100_000, ring_size: 2000 } },
    },
  });
  try {
    await waitFor(() => stack.agentLogs.entries.some((e) => e.msg === 'informer synced' && e.resource === 'events'), 'the events informer to sync', 30_000);
    await waitFor(() => stack.agentLogs.entries.some((e) => e.msg === 'cluster events settings applied'), 'the agent configuration', 30_000);
    const api = { address: stack.kas.addresses.api!, jwt: () => gitlabToKasJwt(secret) };
    const watch = await watchEvents(api, 1);
    const arrived = new Map<number, number>();
    watch.res.on('data', () => {
      const now = performance.now();
      for (const e of watch.events()) {
        const m = /^bench (\d+)$/.exec(e.message);
        if (m && !arrived.has(Number(m[1]))) arrived.set(Number(m[1]), now);
      }
    });
    // Warm-up: the first requests open connections.
    for (let i = 0; i < 20; i++) await createKubeEvent(kube, { type: 'Warning', reason: 'Warmup', message: `warmup ${i}`, object: `warm-${i}` });
    const posted: Array<{ start: number; created: number }> = [];
    const started = performance.now();
    for (let i = 0; i < EVENTS; i++) {
      const start = performance.now();
      await createKubeEvent(kube, { type: 'Warning', reason: 'Bench', message: `bench ${i}`, object: `bench-${i}` });
      posted.push({ start, created: performance.now() });
      const next = started + (i + 1) * PACE_MS;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    await waitFor(() => arrived.size >= EVENTS, `all ${EVENTS} events on the watch`, 60_000, { describe: () => `${arrived.size} arrived` });
    watch.close();
    const fromPost = posted.map((p, i) => arrived.get(i)! - p.start).sort((a, b) => a - b);
    const fromCreated = posted.map((p, i) => arrived.get(i)! - p.created).sort((a, b) => a - b);
    return {
      apiServer: cluster ? 'kube-apiserver v1.20.2' : 'fake',
      events: EVENTS,
      paceMs: PACE_MS,
      fromPostStartMs: { p50: percentile(fromPost, 50), p99: percentile(fromPost, 99), max: fromPost[fromPost.length - 1] },
      fromPostAnswerMs: { p50: percentile(fromCreated, 50), p99: percentile(fromCreated, 99), max: fromCreated[fromCreated.length - 1] },
    };
  } finally {
    await stack.close();
    await cluster?.stop();
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function heapUsed(): number {
  for (let i = 0; i < 3; i++) global.gc?.();
  return process.memoryUsage().heapUsed;
}

/** Heap growth per agent with `ring` events stored for each of `agents` agents. */
async function memoryPerAgent(shape: (agent: number, i: number) => ClusterEventInput): Promise<{ perAgentBytes: number; countedPerAgentBytes: number; eventsPerAgent: number }> {
  const metrics = new ClusterEventsMetrics(new Registry());
  const store = new EventStore({ ringSize: RING, maxBytes: 64 * 1024 ** 3, metrics });
  const hub = new ClusterEventsHub({ store, fanOut: new MemoryFanOut(), metrics, logger: createLogger({ name: 'bench', level: 'silent' }) });
  await hub.start();
  const before = heapUsed();
  for (let a = 1; a <= AGENTS; a++) for (let i = 0; i < RING; i++) hub.publish(a, shape(a, i));
  const after = heapUsed();
  const out = { perAgentBytes: Math.round((after - before) / AGENTS), countedPerAgentBytes: Math.round(store.bytes / AGENTS), eventsPerAgent: store.count / AGENTS };
  await hub.stop();
  return out;
}

const typical = (agent: number, i: number): ClusterEventInput => ({
  source: 'kubernetes',
  type: 'Warning',
  reason: 'BackOff',
  message: `Back-off restarting failed container app in pod web-7d9f8c6b5-x${i}z_production(3f0c9a2e-${agent})`,
  object: { apiVersion: 'v1', kind: 'Pod', namespace: 'production', name: `web-7d9f8c6b5-x${i}z` },
  count: 1 + (i % 7),
  firstTime: '2026-12-03T06:00:00Z',
  lastTime: '2026-12-03T06:04:10Z',
  reporter: 'kubelet',
});

const largest = (agent: number, i: number): ClusterEventInput => ({
  ...typical(agent, i),
  message: `${agent} ${i} ${'m'.repeat(1100)}`,
  object: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'n'.repeat(63), name: `${i}-${'x'.repeat(260)}` },
});

async function main(): Promise<void> {
  if (!global.gc) throw new Error('run with node --expose-gc (npm run bench:events does)');
  const lat = await latency();
  console.log('latency', JSON.stringify(lat));
  const memTypical = await memoryPerAgent(typical);
  console.log('memory (typical events)', JSON.stringify(memTypical));
  const memLargest = await memoryPerAgent(largest);
  console.log('memory (largest events)', JSON.stringify(memLargest));
  const result = { kind: 'events', at: new Date().toISOString(), machine: { cpus: os.cpus().length, node: process.version }, latency: lat, memory: { agents: AGENTS, ring: RING, typical: memTypical, largest: memLargest } };
  const file = join('bench', 'results', `events-${result.at.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`written ${file}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
