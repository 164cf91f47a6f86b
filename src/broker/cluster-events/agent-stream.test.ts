/**
 * kas's side of agent_events streams over real protocol sessions (memory transports): good batches
 * become events; a hostile agent's oversized, excessive or malformed data resets its stream only,
 * its flood is rate limited and bounded by the ring and the budget, and other agents keep theirs.
 */
import { Packr } from 'msgpackr';
import { Registry } from 'prom-client';
import { encodeAgentEventsHead, encodeEventBatch, encodeEventRecord, MAX_EVENT_BATCH_RECORDS, type EventRecord } from '../../protocol/cluster-events.js';
import type { TunnelError } from '../../protocol/errors.js';
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import { createLogger } from '../../shared/logger.js';
import { errorOf } from '../../../test/support/streams.js';
import { waitFor } from '../../../test/support/wait.js';
import type { AgentConnection } from '../tunnel/agent-registry.js';
import { serveAgentEvents } from './agent-stream.js';
import { EventStore } from './event-store.js';
import { MemoryFanOut } from './fan-out.js';
import { ClusterEventsHub } from './hub.js';
import { ClusterEventsMetrics } from './metrics.js';

const silent = createLogger({ name: 'test', level: 'silent' });
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

const record = (i: number, message = `message ${i}`): EventRecord => ({
  type: 'Warning',
  reason: 'Failed',
  message,
  object: { apiVersion: 'v1', kind: 'Pod', namespace: 'ns', name: `pod-${i}` },
  count: 1,
  firstTime: '2026-12-03T06:00:00Z',
  lastTime: '2026-12-03T06:00:00Z',
});

describe('agent_events streams at kas', () => {
  let metrics: ClusterEventsMetrics;
  let store: EventStore;
  let hub: ClusterEventsHub;
  let allowed: number;
  const sessions: Session[] = [];

  async function setUp(options: { ringSize?: number; maxBytes?: number; rate?: number } = {}): Promise<void> {
    metrics = new ClusterEventsMetrics(new Registry());
    store = new EventStore({ ringSize: options.ringSize ?? 200, maxBytes: options.maxBytes ?? 64 << 20, metrics });
    hub = new ClusterEventsHub({ store, fanOut: new MemoryFanOut(), metrics, logger: silent });
    await hub.start();
    allowed = options.rate ?? Infinity;
  }

  afterEach(async () => {
    for (const s of sessions.splice(0)) s.close();
    await hub.stop();
  });

  /** An agent's session pair; kas's side serves agent_events. */
  async function agent(agentId: number): Promise<Session> {
    const [a, b] = createMemoryTransportPair();
    const kasSide = new Session(a, { role: 'server' });
    const agentSide = new Session(b, { role: 'client', hello: {} });
    const connection = { identity: { agentId, agentName: `a${agentId}`, projectId: null, defaultBranch: null }, connectionId: `c${agentId}` } as unknown as AgentConnection;
    const allow = (): boolean => allowed-- > 0;
    kasSide.on('stream', (s: TunnelStream) => serveAgentEvents({ events: hub, metrics, allow }, s, connection, silent));
    await Promise.all([kasSide.ready, agentSide.ready]);
    sessions.push(kasSide, agentSide);
    return agentSide;
  }

  async function open(session: Session): Promise<TunnelStream> {
    const s = session.openStream(encodeAgentEventsHead());
    await replyOf(s);
    return s;
  }

  const dropped = async (reason: string) => (await metrics.dropped.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

  test('records of a batch become events of the agent, tagged kubernetes', async () => {
    await setUp();
    const s = await open(await agent(1));
    s.write(encodeEventBatch([encodeEventRecord(record(1)), encodeEventRecord({ ...record(2), reporter: 'kubelet' })]));
    await waitFor(() => store.count === 2, 'two events stored');
    const events = store.list(1, { limit: 10 }).map((e) => JSON.parse(e.json) as Record<string, unknown>);
    expect(events[0]).toMatchObject({ source: 'kubernetes', type: 'Warning', reason: 'Failed', message: 'message 2', reporter: 'kubelet', object: { kind: 'Pod', name: 'pod-2', namespace: 'ns', apiVersion: 'v1' }, count: 1 });
    expect(events[0]!.id).toEqual(expect.stringMatching(/^\d+$/));
  });

  test.each<[string, () => Buffer]>([
    ['a batch length over the cap', () => Buffer.from([0x7f, 0xff, 0xff, 0xff])],
    ['too many records in a batch', () => encodeTooMany()],
    ['a malformed record', () => frame(packr.pack([packr.pack({ type: 'Warning', reason: 5 })]))],
    ['a batch that is not msgpack', () => frame(Buffer.from([0xc1, 0xc1]))],
  ])('%s resets that stream with PROTOCOL_ERROR; nothing of the batch is kept; the session and other agents go on', async (_what, data) => {
    await setUp();
    const hostile = await agent(1);
    const other = await open(await agent(2));
    const s = await open(hostile);
    s.write(Buffer.concat([data(), encodeEventBatch([encodeEventRecord(record(1))])]));
    const err: TunnelError = await errorOf(s);
    expect(err.code).toBe('PROTOCOL_ERROR');
    expect(store.list(1, { limit: 10 })).toEqual([]);
    expect(await dropped('invalid')).toBe(1);

    const again = await open(hostile);
    again.write(encodeEventBatch([encodeEventRecord(record(3))]));
    other.write(encodeEventBatch([encodeEventRecord(record(4))]));
    await waitFor(() => store.list(1, { limit: 10 }).length === 1 && store.list(2, { limit: 10 }).length === 1, 'a new stream of the same session and another agent to work');
  });

  test('data that ends inside a batch resets the stream', async () => {
    await setUp();
    const s = await open(await agent(1));
    const batch = encodeEventBatch([encodeEventRecord(record(1))]);
    s.end(batch.subarray(0, batch.length - 1));
    expect((await errorOf(s)).code).toBe('PROTOCOL_ERROR');
  });

  test('a flood of the largest events is bounded by the rate, the ring and the budget; a quiet agent keeps its events', async () => {
    const budget = 2 << 20;
    await setUp({ ringSize: 200, maxBytes: budget, rate: 3001 }); // one for the quiet agent
    const quiet = await open(await agent(2));
    quiet.write(encodeEventBatch([encodeEventRecord(record(0, 'quiet'))]));
    await waitFor(() => store.list(2, { limit: 1 }).length === 1, 'the quiet agent\'s event');
    const flood = await Promise.all([1, 3, 4].map(async (id) => ({ id, s: await open(await agent(id)) })));
    const big = (i: number) => encodeEventRecord(record(i, `${i} ${'x'.repeat(1000)}`.slice(0, 1024)));
    for (let batch = 0; batch < 40; batch++) {
      for (const { s } of flood) s.write(encodeEventBatch(Array.from({ length: MAX_EVENT_BATCH_RECORDS }, (_, i) => big(batch * 100 + i))));
    }
    const sent = 40 * MAX_EVENT_BATCH_RECORDS * flood.length;
    await waitFor(async () => store.count + (await dropped('rate_limit')) + (await dropped('ring_full')) + (await dropped('memory_budget')) >= sent, 'every flooded record accounted for', 20_000);
    expect(await dropped('rate_limit')).toBe(sent - 3000);
    expect(store.bytes).toBeLessThanOrEqual(budget);
    for (const { id } of flood) expect(store.list(id, { limit: 1000 }).length).toBeLessThanOrEqual(200);
    expect(store.list(2, { limit: 1 }).map((e) => JSON.parse(e.json).message)).toEqual(['quiet']);
  });
});

function frame(body: Uint8Array): Buffer {
  const out = Buffer.alloc(4 + body.byteLength);
  out.writeUInt32BE(body.byteLength, 0);
  out.set(body, 4);
  return out;
}

function encodeTooMany(): Buffer {
  const one = Buffer.from(encodeEventRecord(record(1)));
  return frame(packr.pack(Array.from({ length: MAX_EVENT_BATCH_RECORDS + 1 }, () => one)));
}
