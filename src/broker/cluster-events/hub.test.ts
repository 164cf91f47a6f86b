/** The hub: publish fills in and normalises events; watches replay after `since` without gap or repeat, also while history is read from another replica's store. */
import { Registry } from 'prom-client';
import { createLogger } from '../../shared/logger.js';
import { EventStore } from './event-store.js';
import { MemoryFanOut, withId, type DeliverEvent, type EventFanOut, type SharedEvent } from './fan-out.js';
import { ClusterEventsHub } from './hub.js';
import { ClusterEventsMetrics } from './metrics.js';

const silent = createLogger({ name: 'test', level: 'silent' });

/** A fan-out whose history the test hands out, as Redis would later. */
class ManualFanOut implements EventFanOut {
  deliver: DeliverEvent = () => undefined;
  seq = 0;
  history: (agentId: number) => Promise<SharedEvent[]> = () => Promise.resolve([]);
  publish(agentId: number, key: string, lastTimeMs: number, body: string): void {
    const id = ++this.seq;
    this.deliver({ agentId, id, key, lastTimeMs, json: withId(id, body) });
  }
  async start(deliver: DeliverEvent): Promise<void> {
    this.deliver = deliver;
  }
  async stop(): Promise<void> {}
}

function hubWith(fanOut: EventFanOut, now = () => Date.parse('2026-12-03T06:00:00Z')) {
  const metrics = new ClusterEventsMetrics(new Registry());
  const store = new EventStore({ ringSize: 100, maxBytes: 1 << 30, metrics });
  return { hub: new ClusterEventsHub({ store, fanOut, metrics, logger: silent, now }), store };
}

const ids = (events: Array<{ json: string }>) => events.map((e) => (JSON.parse(e.json) as { id: string }).id);

describe('ClusterEventsHub', () => {
  test('publish fills in count and times, cuts long strings and keeps the shape the API serves', async () => {
    const { hub } = hubWith(new MemoryFanOut());
    await hub.start();
    hub.publish(1, { source: 'gitops', type: 'Normal', reason: 'Synced', message: 'x'.repeat(5000), object: { kind: 'Deployment', name: 'web', namespace: 'prod' } });
    hub.publish(0, { source: 'kas', type: 'Normal', reason: 'ignored', message: 'agent id 0 is not an agent' });
    const [e] = await hub.list(1, { limit: 10 });
    expect(JSON.parse(e!.json)).toEqual({
      id: '1',
      source: 'gitops',
      type: 'Normal',
      reason: 'Synced',
      message: 'x'.repeat(1024),
      object: { kind: 'Deployment', name: 'web', namespace: 'prod' },
      count: 1,
      firstTime: '2026-12-03T06:00:00.000Z',
      lastTime: '2026-12-03T06:00:00.000Z',
      receivedAt: '2026-12-03T06:00:00.000Z',
    });
    expect(await hub.list(0, { limit: 10 })).toEqual([]);
  });

  test('a watch with since replays the stored events after it, then live ones; events during the history read are neither lost nor repeated', async () => {
    const fanOut = new ManualFanOut();
    const { hub } = hubWith(fanOut);
    await hub.start();
    for (let i = 0; i < 3; i++) hub.publish(1, { source: 'kas', type: 'Normal', reason: 'R', message: `m${i}` });
    // History (another replica's events 4 and 5) arrives only after a live event (6) came in.
    let release!: (events: SharedEvent[]) => void;
    fanOut.history = () => new Promise((resolve) => (release = resolve));
    const got: string[] = [];
    const watching = hub.watch(1, (e) => got.push(ids([e])[0]!), 1);
    fanOut.seq = 5;
    hub.publish(1, { source: 'kas', type: 'Normal', reason: 'R', message: 'live 6' });
    const remote = (id: number): SharedEvent => ({ agentId: 1, id, key: `k${id}`, lastTimeMs: 0, json: `{"id":"${id}"}` });
    release([remote(4), remote(5)]);
    const unwatch = await watching;
    hub.publish(1, { source: 'kas', type: 'Normal', reason: 'R', message: 'live 7' });
    expect(got).toEqual(['2', '3', '4', '5', '6', '7']);
    unwatch();
    hub.publish(1, { source: 'kas', type: 'Normal', reason: 'R', message: 'after' });
    expect(got).toHaveLength(6);
    expect(hub.watcherCount).toBe(0);
  });

  test('a failed history read answers from this replica and is tried again next time', async () => {
    const fanOut = new ManualFanOut();
    const { hub } = hubWith(fanOut);
    await hub.start();
    let calls = 0;
    fanOut.history = () => (++calls === 1 ? Promise.reject(new Error('Redis down')) : Promise.resolve([]));
    hub.publish(1, { source: 'kas', type: 'Normal', reason: 'R', message: 'm' });
    expect(await hub.list(1, { limit: 10 })).toHaveLength(1);
    await hub.list(1, { limit: 10 });
    await hub.list(1, { limit: 10 });
    expect(calls).toBe(2);
  });
});
