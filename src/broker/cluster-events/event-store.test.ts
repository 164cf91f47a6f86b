/** The events kas keeps: the ring per agent, merged repeats, and the byte budget's eviction order. */
import { Registry } from 'prom-client';
import { EventStore, entryBytes, type StoredEvent } from './event-store.js';
import { ClusterEventsMetrics } from './metrics.js';

let nextId = 0;
function ev(key: string, size = 100, lastTimeMs = 0): StoredEvent {
  const json = `{"id":"${++nextId}","pad":"${'x'.repeat(size)}"}`;
  return { id: nextId, key, lastTimeMs, json, bytes: entryBytes(key, json) };
}

async function dropped(metrics: ClusterEventsMetrics, reason: string): Promise<number> {
  return (await metrics.dropped.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

describe('EventStore', () => {
  test('a ring keeps the newest ring_size events of an agent; lists are newest first, with since and limit', async () => {
    const metrics = new ClusterEventsMetrics(new Registry());
    const store = new EventStore({ ringSize: 3, maxBytes: 1 << 30, metrics });
    const events = [ev('a', 10, 1000), ev('b', 10, 2000), ev('c', 10, 3000), ev('d', 10, 4000)];
    for (const e of events) store.add(1, e);
    expect(store.list(1, { limit: 10 }).map((e) => e.key)).toEqual(['d', 'c', 'b']);
    expect(store.list(1, { limit: 2 }).map((e) => e.key)).toEqual(['d', 'c']);
    expect(store.list(1, { limit: 10, sinceId: events[2]!.id }).map((e) => e.key)).toEqual(['d']);
    expect(store.list(1, { limit: 10, sinceTimeMs: 2500 }).map((e) => e.key)).toEqual(['d', 'c']);
    expect(store.list(2, { limit: 10 })).toEqual([]);
    expect(await dropped(metrics, 'ring_full')).toBe(1);
    expect(store.count).toBe(3);
  });

  test('a repeat (same key) replaces the older entry; an older copy of a stored repeat is not kept', async () => {
    const metrics = new ClusterEventsMetrics(new Registry());
    const store = new EventStore({ ringSize: 10, maxBytes: 1 << 30, metrics });
    const first = ev('k');
    store.add(1, first);
    store.add(1, ev('other'));
    const repeat = ev('k');
    store.add(1, repeat);
    expect(store.list(1, { limit: 10 }).map((e) => e.id)).toEqual([repeat.id, repeat.id - 1]);
    expect(store.add(1, first)).toBe(false);
    expect(store.add(1, repeat)).toBe(false);
    expect(store.count).toBe(2);
    expect(await dropped(metrics, 'merged')).toBe(1);
  });

  test('events arriving out of order (history and live) are kept in id order', () => {
    const store = new EventStore({ ringSize: 10, maxBytes: 1 << 30 });
    const [a, b, c] = [ev('a'), ev('b'), ev('c')];
    store.add(1, c);
    store.add(1, a);
    store.add(1, b);
    expect(store.list(1, { limit: 10 }).map((e) => e.key)).toEqual(['c', 'b', 'a']);
  });

  test('over the budget, the oldest events of the agents with the most bytes go first; a quiet agent keeps its events', () => {
    const one = entryBytes('k', ev('k', 1000).json);
    const store = new EventStore({ ringSize: 1000, maxBytes: one * 40 });
    const quiet = [ev('q1', 1000), ev('q2', 1000)];
    for (const e of quiet) store.add(7, e);
    const medium = Array.from({ length: 10 }, (_, i) => ev(`m${i}`, 1000));
    for (const e of medium) store.add(8, e);
    // The noisy agent floods: it is the one that loses its oldest events.
    for (let i = 0; i < 200; i++) store.add(9, ev(`n${i}`, 1000));
    expect(store.bytes).toBeLessThanOrEqual(one * 40);
    expect(store.list(7, { limit: 10 }).map((e) => e.key)).toEqual(['q2', 'q1']);
    expect(store.list(8, { limit: 100 })).toHaveLength(10);
    const noisy = store.list(9, { limit: 1000 });
    expect(noisy[0]!.key).toBe('n199');
    expect(noisy.length).toBeGreaterThan(10);
    expect(noisy.length).toBeLessThan(40);

    // When the noisy agent is down to the others' size, they all lose their oldest, the largest first.
    for (let i = 0; i < 3; i++) store.add(8, ev(`m+${i}`, 1000));
    const usage = store.usage();
    expect(store.bytes).toBeLessThanOrEqual(one * 40);
    expect(usage.find((u) => u.agentId === 7)?.events).toBe(2);
    expect(store.list(8, { limit: 100 })[0]!.key).toBe('m+2');
  });

  test('the bytes counted stay exact through merges, ring trims and evictions', () => {
    const store = new EventStore({ ringSize: 5, maxBytes: 5000 });
    for (let i = 0; i < 500; i++) store.add(1 + (i % 7), ev(`k${i % 13}`, (i * 37) % 400));
    const sum = store.usage().reduce((s, u) => s + u.bytes, 0);
    expect(store.bytes).toBe(sum);
    const listed = store.usage().reduce((s, u) => s + store.list(u.agentId, { limit: 100 }).reduce((t, e) => t + e.bytes, 0), 0);
    expect(listed).toBe(sum);
    expect(store.bytes).toBeLessThanOrEqual(5000);
  });
});
