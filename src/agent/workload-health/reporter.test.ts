/**
 * agentk's workload health reporter with in-memory caches (a stub of the informer layer) and kas
 * made from the protocol (memory transports): when summaries are sent, and that they are sent only
 * when they change.
 */
import type { KubernetesObject, V1Deployment } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import type { TunnelStream } from '../../protocol/stream.js';
import { WORKLOAD_HEALTH_STREAM, decodeWorkloadHealthData, decodeWorkloadHealthHead, encodeWorkloadHealthReply, type WorkloadHealthSummary } from '../../protocol/workload-health.js';
import { createLogger } from '../../shared/logger.js';
import { readAll } from '../../../test/support/streams.js';
import { waitFor } from '../../../test/support/wait.js';
import type { InformerEvent, InformerHandle, Informers, ResourceType } from '../informers/informers.js';
import { KasStreams } from '../tunnel/kas-streams.js';
import { WorkloadHealthMetrics } from './metrics.js';
import { WorkloadHealthReporter } from './reporter.js';

const silent = createLogger({ name: 'test', level: 'silent' });

/** One in-memory cache per resource type, filled by the test; `sync()` marks them all synced. */
class StubInformers implements Informers {
  readonly caches = new Map<string, { objects: Map<string, KubernetesObject>; listeners: Set<(ev: InformerEvent<KubernetesObject>) => void>; refs: number }>();
  private synced = false;
  private readonly waiting: Array<() => void> = [];

  acquire<T extends KubernetesObject>(type: ResourceType): InformerHandle<T> {
    let cache = this.caches.get(type.plural);
    if (!cache) {
      cache = { objects: new Map(), listeners: new Set(), refs: 0 };
      this.caches.set(type.plural, cache);
    }
    cache.refs++;
    const c = cache;
    const isSynced = () => this.synced;
    return {
      get synced() {
        return isSynced();
      },
      waitForSync: () => (this.synced ? Promise.resolve() : new Promise<void>((resolve) => this.waiting.push(resolve))),
      list: () => [...c.objects.values()] as T[],
      get: (ns, name) => c.objects.get(`${ns}/${name}`) as T | undefined,
      on: (listener) => {
        const l = listener as (ev: InformerEvent<KubernetesObject>) => void;
        c.listeners.add(l);
        return () => c.listeners.delete(l);
      },
      release: () => {
        c.refs--;
      },
    };
  }

  stop(): void {}

  sync(): void {
    this.synced = true;
    for (const r of this.waiting.splice(0)) r();
  }

  put(plural: string, object: KubernetesObject): void {
    const cache = this.caches.get(plural)!;
    const key = `${object.metadata!.namespace}/${object.metadata!.name}`;
    const old = cache.objects.get(key);
    cache.objects.set(key, object);
    for (const l of cache.listeners) l({ type: old ? 'update' : 'add', object, old });
  }
}

function deployment(name: string, available: number): V1Deployment {
  return { metadata: { name, namespace: 'shop' }, spec: { replicas: 2, selector: {}, template: {} }, status: { availableReplicas: available } };
}

/** A kas serving workload_health on one session; records the summaries it receives. */
async function kasSession(streams: KasStreams, received: Array<{ seq: number; summary: WorkloadHealthSummary }>, features = [WORKLOAD_HEALTH_STREAM]): Promise<{ close(): void }> {
  const [a, b] = createMemoryTransportPair();
  const kasSide = new Session(a, { role: 'server', welcome: { features } });
  const agentSide = new Session(b, { role: 'client', hello: {} });
  kasSide.on('stream', (s: TunnelStream) => {
    const head = decodeWorkloadHealthHead(s.peerHead!);
    void readAll(s).then((data) => {
      received.push({ seq: head.seq, summary: decodeWorkloadHealthData(data) });
      s.reply(encodeWorkloadHealthReply(), { end: true });
    });
  });
  const [, welcome] = await Promise.all([kasSide.ready, agentSide.ready]);
  streams.added(agentSide, welcome);
  return {
    close: () => {
      streams.removed(agentSide);
      agentSide.close();
      kasSide.close();
    },
  };
}

describe('workload health reporter', () => {
  let informers: StubInformers;
  let streams: KasStreams;
  let reporter: WorkloadHealthReporter;
  let metrics: WorkloadHealthMetrics;
  const closers: Array<{ close(): void }> = [];

  function start(options: ConstructorParameters<typeof WorkloadHealthReporter>[1] = {}): Promise<void> {
    informers = new StubInformers();
    streams = new KasStreams();
    metrics = new WorkloadHealthMetrics(new Registry());
    reporter = new WorkloadHealthReporter({ informers, kas: streams, logger: silent, metrics }, { debounceMs: 300, ...options });
    return reporter.start();
  }

  afterEach(async () => {
    await reporter.stop();
    streams.stop();
    for (const c of closers.splice(0)) c.close();
  });

  it('watches nothing until a kas serves workload_health, then sends the first summary once the caches are filled', async () => {
    await start();
    const received: Array<{ seq: number; summary: WorkloadHealthSummary }> = [];
    closers.push(await kasSession(streams, [], ['http']));
    expect(informers.caches.size).toBe(0);
    closers.push(await kasSession(streams, received));
    expect([...informers.caches.keys()].sort()).toEqual(['daemonsets', 'deployments', 'jobs', 'pods', 'statefulsets']);
    informers.put('deployments', deployment('web', 0));
    expect(received).toEqual([]);
    informers.sync();
    await waitFor(() => received.length === 1, 'the first summary');
    expect(received[0]!.summary.namespaces[0]!.problems).toEqual([{ kind: 'Deployment', name: 'web', problem: 'Unavailable', desired: 2, available: 0 }]);
  });

  it('sends one summary for a burst of changes, none for changes that do not change it, and the current one on every new session', async () => {
    await start({ debounceMs: 500 });
    const received: Array<{ seq: number; summary: WorkloadHealthSummary }> = [];
    closers.push(await kasSession(streams, received));
    informers.sync();
    await waitFor(() => received.length === 1, 'the first (empty) summary');
    for (let i = 0; i < 20; i++) informers.put('deployments', deployment('web', i % 2));
    await waitFor(() => received.length === 2, 'the summary after the burst');
    expect(received[1]!.summary.namespaces[0]!.problems[0]).toMatchObject({ available: 1 });
    // Same state, new object: recomputed, not sent. A change that is sent afterwards proves the quiet one was processed.
    informers.put('deployments', { ...deployment('web', 1), metadata: { name: 'web', namespace: 'shop', resourceVersion: '9' } });
    informers.put('deployments', deployment('api', 2));
    await new Promise((r) => setTimeout(r, 1500));
    expect(received).toHaveLength(2);
    informers.put('deployments', deployment('web', 2));
    await waitFor(() => received.length === 3, 'the recovered summary');
    expect(received[2]!.summary.namespaces).toEqual([]);
    expect(received.map((r) => r.seq)).toEqual([0, 1, 2]);

    const second: Array<{ seq: number; summary: WorkloadHealthSummary }> = [];
    closers.push(await kasSession(streams, second));
    await waitFor(() => second.length === 1, 'the current summary on the new session');
    expect(second[0]).toEqual(received[2]);
    expect((await metrics.sent.get()).values.find((v) => v.labels.outcome === 'ok')?.value).toBe(4);
  });

  it('still reports under continuous churn, after at most maxWaitMs', async () => {
    await start({ debounceMs: 1000, maxWaitMs: 1500 });
    const received: Array<{ seq: number; summary: WorkloadHealthSummary }> = [];
    closers.push(await kasSession(streams, received));
    informers.sync();
    await waitFor(() => received.length === 1, 'the first summary');
    let i = 0;
    // A change every 100 ms never leaves the debounce's quiet second; only the max wait reports.
    const churn = setInterval(() => informers.put('deployments', deployment(`d${i++}`, 0)), 100);
    try {
      await waitFor(() => received.length >= 2, 'a summary while the cluster keeps changing', 30_000);
    } finally {
      clearInterval(churn);
    }
    expect(received[1]!.summary.namespaces[0]!.problems.length).toBeGreaterThan(0);
  });

  it('releases the caches when it stops', async () => {
    await start();
    closers.push(await kasSession(streams, []));
    await reporter.stop();
    expect([...informers.caches.values()].map((c) => c.refs)).toEqual([0, 0, 0, 0, 0]);
  });
});
