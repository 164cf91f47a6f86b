/**
 * Cluster events end to end on loopback: Events created in the (fake) API server reach kas through
 * a real agentk and are served on the API for GitLab (list, watch as NDJSON and as server-sent
 * events), filtered by the agent's observability.events section and merged; agents' connects and
 * disconnects are served with them; bad parameters are 400; a watcher that does not read is cut.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLUSTER_EVENTS } from '../../src/broker/cluster-events/service.js';
import { apiGet as rawGet, createKubeEvent, listEvents as listAgentEvents, watchEvents, type EventsApi, type EventsWatch, type KubeEventSpec } from '../support/events-api.js';
import { gitlabToKasJwt } from '../support/fake-gitlab.js';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { startStack, type Stack } from '../support/stack.js';
import { waitFor } from '../support/wait.js';

let upstream: FakeKubeApi;
let stack: Stack;
let secret: Buffer;
let configDir: string;

const api: EventsApi = { address: '', jwt: () => gitlabToKasJwt(secret) };
const listEvents = (query = '') => listAgentEvents(api, 1, query);
const watch = (query: string, headers: Record<string, string> = {}) => watchEvents(api, 1, query, headers);
const apiGet = (path: string) => rawGet(api, path);
const ndjson = (w: EventsWatch) => w.events();
const createEvent = (e: KubeEventSpec) => createKubeEvent(upstream, e);

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = stack.kas.metrics.getSingleMetric(name);
  if (!m) throw new Error(`kas has no metric ${name}`);
  const values = (await m.get()).values;
  return values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((s, v) => s + v.value, 0);
}

beforeAll(async () => {
  upstream = await startFakeKubeApi();
  configDir = mkdtempSync(join(tmpdir(), 'kas-events-configs-'));
  mkdirSync(join(configDir, 'agent-one'));
  writeFileSync(join(configDir, 'agent-one', 'config.yaml'), 'observability:\n  events:\n    types: [Warning]\n');
  secret = randomBytes(32);
  const secretFile = join(configDir, 'api.secret');
  writeFileSync(secretFile, secret.toString('base64'));
  stack = await startStack({
    upstream,
    kas: {
      api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
      standalone: { config_dir: configDir },
      agent: { events: { watch_heartbeat: '200ms', watch_buffer: 16 * 1024 } },
    },
  });
  api.address = stack.kas.addresses.api!;
  await waitFor(() => stack.agentLogs.text.includes('following cluster events'), 'agentk to follow cluster events');
  await waitFor(() => stack.agentLogs.text.includes('informer synced'), 'agentk\'s events informer to sync');
}, 60_000);

afterAll(async () => {
  await stack?.close();
  await upstream?.close();
  rmSync(configDir, { recursive: true, force: true });
});

describe('cluster events on the API for GitLab', () => {
  test('a Warning created in the cluster reaches an NDJSON watcher, an SSE watcher and the list; a Normal one does not (types: [Warning])', async () => {
    const plain = await watch('');
    const sse = await watch('', { Accept: 'text/event-stream' });
    expect(plain.res.headers['content-type']).toMatch(/application\/x-ndjson/);
    expect(sse.res.headers['content-type']).toMatch(/text\/event-stream/);
    await createEvent({ type: 'Normal', reason: 'Scheduled', message: 'assigned to node-1', object: 'web-1' });
    await createEvent({ type: 'Warning', reason: 'BackOff', message: 'Back-off restarting failed container', object: 'web-1' });
    await waitFor(() => ndjson(plain).some((e) => e.reason === 'BackOff'), 'the Warning on the NDJSON watch', 20_000, { describe: () => plain.text() });
    await waitFor(() => sse.text().includes('"reason":"BackOff"'), 'the Warning on the SSE watch', 20_000, { describe: () => sse.text() });
    expect(ndjson(plain).filter((e) => e.source === 'kubernetes').map((e) => e.reason)).toEqual(['BackOff']);
    const [warning] = ndjson(plain).filter((e) => e.reason === 'BackOff');
    expect(warning).toMatchObject({ source: 'kubernetes', type: 'Warning', count: 1, object: { kind: 'Pod', name: 'web-1', namespace: 'default' } });
    expect(sse.text()).toMatch(new RegExp(`id: ${warning!.id}\\nevent: cluster_event\\ndata: \\{"id":"${warning!.id}"`));
    // Heartbeats keep the connections busy: a blank line, an SSE comment.
    await waitFor(() => sse.text().includes(': heartbeat\n\n') && /\n\n/.test(plain.text()), 'heartbeats on both watches');
    plain.close();
    sse.close();

    const list = await listEvents();
    expect(list.find((e) => e.reason === 'BackOff')).toMatchObject({ id: warning!.id });
    expect(list.some((e) => e.reason === 'Scheduled')).toBe(false);
  });

  test('repeats of one event are merged into one entry with its count; the list is newest first, with limit and since', async () => {
    for (let i = 0; i < 3; i++) await createEvent({ type: 'Warning', reason: 'FailedMount', message: 'volume "data" not found', object: 'db-0' });
    let last: unknown = null;
    await waitFor(async () => (last = await listEvents()).some((e) => e.reason === 'FailedMount' && e.count === 3), 'one FailedMount entry with count 3', 20_000, {
      describe: () => JSON.stringify(last),
    });
    const list = await listEvents();
    expect(list.filter((e) => e.reason === 'FailedMount')).toHaveLength(1);
    const ids = list.map((e) => Number(e.id));
    expect([...ids].sort((a, b) => b - a)).toEqual(ids);
    expect(await listEvents('?limit=1')).toHaveLength(1);
    expect(await listEvents(`?since=${ids[0]}`)).toEqual([]);
    expect((await listEvents(`?since=${ids[1]}`)).map((e) => e.id)).toEqual([String(ids[0])]);
    expect(await listEvents('?since=2999-01-01T00:00:00Z')).toEqual([]);
  });

  test('a watch with since replays what came after that id, then goes on live', async () => {
    const [newest] = await listEvents('?limit=1');
    await createEvent({ type: 'Warning', reason: 'Evicted', message: 'node low on memory', object: 'cache-1' });
    await waitFor(async () => (await listEvents('?limit=1'))[0]!.reason === 'Evicted', 'Evicted in the list');
    const w = await watch(`&since=${newest!.id}`);
    await waitFor(() => ndjson(w).some((e) => e.reason === 'Evicted'), 'the replay of Evicted');
    await createEvent({ type: 'Warning', reason: 'OOMKilled', message: 'container killed', object: 'cache-1' });
    await waitFor(() => ndjson(w).some((e) => e.reason === 'OOMKilled'), 'the live OOMKilled');
    expect(ndjson(w).map((e) => e.reason)).toEqual(['Evicted', 'OOMKilled']);
    w.close();
  });

  test('bad parameters are 400 with the API\'s error shape; no JWT is 401', async () => {
    for (const q of ['?since=yesterday', '?limit=0', '?limit=1001', '?limit=x', '?watch=maybe', '?watch=true&since=2026-01-01T00:00:00Z']) {
      const r = await apiGet(`/api/v1/agents/1/events${q}`);
      expect([q, r.status]).toEqual([q, 400]);
      expect(JSON.parse(r.body)).toMatchObject({ error: { code: 'BAD_REQUEST' } });
    }
    expect((await apiGet('/api/v1/agents/abc/events')).status).toBe(400);
    const anonymous = await new Promise<number>((resolve) => http.get(`http://${api.address}/api/v1/agents/1/events`, (res) => (res.resume(), resolve(res.statusCode ?? 0))));
    expect(anonymous).toBe(401);
  });

  test('a watcher that does not read is cut once its buffer is full; others are not', async () => {
    const events = stack.kas.service(CLUSTER_EVENTS)!;
    const reading = await watch('');
    const stalled = await watch('');
    stalled.res.pause();
    stalled.req.socket?.pause();
    const cutBefore = await metric('kas_cluster_events_watchers_cut_total', { reason: 'slow' });
    // A few events at a time (a reader keeps up with that), until the socket buffers and the 16 KiB
    // watch buffer of the stalled one are full.
    let published = 0;
    while ((await metric('kas_cluster_events_watchers_cut_total', { reason: 'slow' })) === cutBefore) {
      if (published > 100_000) throw new Error('the stalled watcher was never cut');
      for (let i = 0; i < 10; i++) events.publish(1, { source: 'gitops', type: 'Normal', reason: 'Synced', message: `${published++} ${'x'.repeat(1000)}` });
      await new Promise((r) => setTimeout(r, 2));
    }
    await waitFor(() => ndjson(reading).filter((e) => e.reason === 'Synced').length === published, 'the reading watcher to get every event', 30_000, {
      describe: () => `${ndjson(reading).filter((e) => e.reason === 'Synced').length} of ${published}`,
    });
    reading.close();
    stalled.close();
  });

  test('connects and disconnects of the agent are events of source kas, with the reason; disconnects are counted', async () => {
    const before = await metric('kas_agent_disconnects_total', { reason: 'closed_by_agent' });
    await stack.agent!.stop();
    await waitFor(async () => (await listEvents()).some((e) => e.source === 'kas' && e.reason === 'AgentDisconnected'), 'an AgentDisconnected event');
    const disconnected = (await listEvents()).find((e) => e.reason === 'AgentDisconnected')!;
    expect(disconnected).toMatchObject({ source: 'kas', type: 'Warning' });
    expect(disconnected.message).toMatch(/\(closed_by_agent\)/);
    expect(await metric('kas_agent_disconnects_total', { reason: 'closed_by_agent' })).toBeGreaterThan(before);

    await stack.startAgent();
    await stack.waitForAgent();
    await waitFor(async () => (await listEvents('?limit=5')).some((e) => e.reason === 'AgentConnected'), 'an AgentConnected event after the new connection');
    expect((await listEvents('?limit=5')).find((e) => e.reason === 'AgentConnected')).toMatchObject({ source: 'kas', type: 'Normal' });
  });
});
