/** Merging repeats and limiting the rate of cluster events in agentk. */
import { Registry } from 'prom-client';
import type { EventRecord } from '../../protocol/cluster-events.js';
import { newOccurrences, recordOf, type KubeEvent } from './event-record.js';
import { EventMerger } from './merger.js';
import { ClusterEventsAgentMetrics } from './metrics.js';
import { eventSettings } from './settings.js';
import { TokenBucket } from './token-bucket.js';

const rec = (name: string, over: Partial<EventRecord> = {}): EventRecord => ({
  type: 'Warning',
  reason: 'BackOff',
  message: 'restarting',
  object: { apiVersion: 'v1', kind: 'Pod', namespace: 'ns', name },
  count: 1,
  firstTime: '2026-12-03T06:00:00.000Z',
  lastTime: '2026-12-03T06:00:00.000Z',
  ...over,
});

function setUp(rate = 1000, burst = 1000, options: { maxQueued?: number; maxEntries?: number } = {}) {
  let now = 0;
  const metrics = new ClusterEventsAgentMetrics(new Registry());
  const bucket = new TokenBucket(rate, burst, () => now);
  const merger = new EventMerger({ bucket, metrics, ...options });
  const dropped = async (reason: string) => (await metrics.dropped.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  return { merger, bucket, dropped, advance: (ms: number) => (now += ms) };
}

describe('EventMerger', () => {
  test('repeats waiting to be sent are one record with the count and the latest time', () => {
    const { merger } = setUp();
    merger.add(rec('a'));
    merger.add(rec('a', { count: 2, lastTime: '2026-12-03T06:00:05.000Z' }));
    merger.add(rec('b'));
    merger.add(rec('a', { lastTime: '2026-12-03T06:00:03.000Z' }));
    const out = merger.take(10);
    expect(out.map((r) => [r.object.name, r.count, r.lastTime])).toEqual([
      ['a', 4, '2026-12-03T06:00:05.000Z'],
      ['b', 1, '2026-12-03T06:00:00.000Z'],
    ]);
    expect(out[0]!.firstTime).toBe('2026-12-03T06:00:00.000Z');
  });

  test('a repeat after its record was sent goes again with the running total', () => {
    const { merger } = setUp();
    merger.add(rec('a'));
    merger.take(10);
    merger.add(rec('a'));
    expect(merger.take(10).map((r) => r.count)).toEqual([2]);
  });

  test('a different message, reason or object is a different event', () => {
    const { merger } = setUp();
    merger.add(rec('a'));
    merger.add(rec('a', { message: 'other' }));
    merger.add(rec('a', { reason: 'Failed' }));
    merger.add(rec('a', { object: { kind: 'Pod', namespace: 'other', name: 'a' } }));
    expect(merger.take(10)).toHaveLength(4);
  });

  test('a flood over the rate is cut and counted; repeats over the rate still count in their total', async () => {
    const { merger, dropped, advance } = setUp(10, 20);
    for (let i = 0; i < 100; i++) merger.add(rec(`pod-${i}`));
    expect(merger.take(1000)).toHaveLength(20);
    expect(await dropped('rate_limit')).toBe(80);
    // Repeats of a sent event, over the rate: counted, not sent.
    for (let i = 0; i < 5; i++) merger.add(rec('pod-0'));
    expect(merger.take(1000)).toHaveLength(0);
    expect(await dropped('rate_limit')).toBe(85);
    advance(1000);
    merger.add(rec('pod-0'));
    const [again] = merger.take(1000);
    expect(again!.count).toBe(7);
    // The bucket refills at the rate: 10 per second, 9 left after pod-0.
    for (let i = 100; i < 120; i++) merger.add(rec(`pod-${i}`));
    expect(merger.take(1000)).toHaveLength(9);
  });

  test('records waiting and events remembered are bounded', async () => {
    const { merger, dropped } = setUp(1e6, 1e6, { maxQueued: 10, maxEntries: 20 });
    for (let i = 0; i < 50; i++) merger.add(rec(`pod-${i}`));
    expect(merger.queued).toBe(10);
    expect(await dropped('queue_full')).toBe(40);
    expect(merger.take(100).map((r) => r.object.name)).toEqual(Array.from({ length: 10 }, (_, i) => `pod-${40 + i}`));
    // pod-0 was forgotten: it starts a new total.
    merger.add(rec('pod-0'));
    expect(merger.take(1)[0]!.count).toBe(1);
  });
});

describe('Events as records', () => {
  const event: KubeEvent = {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: 'web.1', namespace: 'ns', creationTimestamp: '2026-12-03T06:00:00Z' as unknown as Date },
    involvedObject: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'ns', name: 'web', uid: 'u1' },
    type: 'Warning',
    reason: 'FailedCreate',
    message: 'quota exceeded',
    count: 3,
    firstTimestamp: '2026-12-03T05:00:00Z',
    lastTimestamp: '2026-12-03T06:00:00Z',
    source: { component: 'replicaset-controller' },
  };

  test('a new Event counts all its occurrences; an update only the growth; a delete none', () => {
    expect(newOccurrences('add', event, undefined)).toBe(3);
    expect(newOccurrences('update', { ...event, count: 5 }, event)).toBe(2);
    expect(newOccurrences('update', { ...event, message: 'x' }, event)).toBe(0);
    expect(newOccurrences('delete', event, undefined)).toBe(0);
    expect(newOccurrences('update', { ...event, series: { count: 9 } }, { ...event, series: { count: 4 } })).toBe(5);
  });

  test('the record carries the object, times and reporter; an unknown type is none', () => {
    expect(recordOf(event, 2)).toEqual({
      type: 'Warning',
      reason: 'FailedCreate',
      message: 'quota exceeded',
      object: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'ns', name: 'web', uid: 'u1' },
      count: 2,
      firstTime: '2026-12-03T05:00:00.000Z',
      lastTime: '2026-12-03T06:00:00.000Z',
      reporter: 'replicaset-controller',
    });
    expect(recordOf({ ...event, type: 'Error' }, 1)).toBeNull();
    const bare = recordOf({ apiVersion: 'v1', kind: 'Event', metadata: { name: 'x', creationTimestamp: '2026-12-03T07:00:00Z' as unknown as Date }, eventTime: '2026-12-03T07:00:00.123456Z' }, 1)!;
    expect(bare).toMatchObject({ type: 'Normal', reason: '(no reason)', lastTime: '2026-12-03T07:00:00.123Z', firstTime: '2026-12-03T07:00:00.123Z' });
  });
});

describe('observability.events settings', () => {
  test('defaults: Warning, all namespaces, no selector, 10/s with bursts of 100', () => {
    const s = eventSettings(undefined);
    expect([...s.types]).toEqual(['Warning']);
    expect(s).toMatchObject({ namespaces: [], labelSelector: '', requirements: [], rate: 10, burst: 100 });
  });

  test('a section sets each key; namespaces are deduplicated', () => {
    const s = eventSettings({ events: { types: ['Normal'], namespaces: ['b', 'a', 'b'], label_selector: 'app=web', rate_limit: 1, burst: 2 } });
    expect([...s.types]).toEqual(['Normal']);
    expect(s).toMatchObject({ namespaces: ['a', 'b'], labelSelector: 'app=web', rate: 1, burst: 2 });
  });
});
