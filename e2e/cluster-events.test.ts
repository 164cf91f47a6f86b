/**
 * Cluster events against a real kube-apiserver: Events of type Warning and Normal created with the
 * API reach kas's API only as the agent's observability.events section says (type, namespace, the
 * involved object's labels), repeats (new Events and an Event counting up) are merged into one
 * entry, and a flood above the agent's rate limit is cut and counted. kas and agentk run in this
 * process (test/support/stack.ts), the API server and etcd are real.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKubeEvent, listEvents, watchEvents, type ApiEvent, type EventsApi, type KubeEventSpec } from '../test/support/events-api.js';
import { gitlabToKasJwt } from '../test/support/fake-gitlab.js';
import { startStack, type Stack } from '../test/support/stack.js';
import { waitFor } from '../test/support/wait.js';
import { startCluster, type Cluster } from './support/cluster.js';

let cluster: Cluster;
let stack: Stack;
let dir: string;
const secret = randomBytes(32);
const api: EventsApi = { address: '', jwt: () => gitlabToKasJwt(secret) };
const kubeEvents = async (query = '') => (await listEvents(api, 1, query)).filter((e) => e.source === 'kubernetes');

function writeAgentConfig(events: Record<string, unknown>): void {
  writeFileSync(join(dir, 'agent-one', 'config.yaml'), JSON.stringify({ observability: { events } }));
}

/** Writes the section and waits until agentk put it in force (it logs each change). */
async function configure(events: Record<string, unknown>, expected: Record<string, unknown>): Promise<void> {
  const before = stack.agentLogs.entries.filter((e) => e.msg === 'cluster events settings applied').length;
  writeAgentConfig(events);
  await waitFor(
    () => stack.agentLogs.entries.filter((e) => e.msg === 'cluster events settings applied').slice(before).some((e) => Object.entries(expected).every(([k, v]) => JSON.stringify(e[k]) === JSON.stringify(v))),
    `agentk to apply ${JSON.stringify(events)}`,
    30_000,
  );
}

async function kube(method: string, path: string, body?: unknown, contentType?: string): Promise<Record<string, unknown>> {
  const r = await cluster.request(method, path, body, { contentType });
  if (r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
  return r.json as Record<string, unknown>;
}

const event = (e: KubeEventSpec) => createKubeEvent({ url: cluster.url, caPem: cluster.caPem, token: cluster.adminToken }, e);

async function agentMetric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = stack.agent!.metrics.registry.getSingleMetric(name);
  if (!m) return 0;
  return (await m.get()).values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((s, v) => s + v.value, 0);
}

beforeAll(async () => {
  cluster = await startCluster();
  for (const name of ['ev-a', 'ev-b']) await kube('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  dir = mkdtempSync(join(tmpdir(), 'e2e-events-'));
  mkdirSync(join(dir, 'agent-one'));
  writeFileSync(join(dir, 'api.secret'), secret.toString('base64'));
  writeAgentConfig({ types: ['Warning'], namespaces: ['ev-a'], rate_limit: 100, burst: 1000 });
  stack = await startStack({
    upstream: { url: cluster.url, caPem: cluster.caPem, token: cluster.adminToken },
    agent: { clusterEvents: {} },
    kas: {
      api: { listen: { address: '127.0.0.1:0', authentication_secret_file: join(dir, 'api.secret') } },
      standalone: { config_dir: dir },
      agent: { configuration: { poll_period: '1s' }, events: { rate_limit: 10_000, burst: 10_000 } },
    },
  });
  api.address = stack.kas.addresses.api!;
  await waitFor(() => stack.agentLogs.entries.some((e) => e.msg === 'informer synced' && e.resource === 'events'), 'agentk\'s events informer to sync', 30_000);
}, 240_000);

afterAll(async () => {
  await stack?.close();
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('cluster events from a real API server', () => {
  test('only Warning events of the configured namespace arrive at kas\'s API', async () => {
    const w = await watchEvents(api, 1);
    await event({ type: 'Normal', reason: 'Pulled', message: 'image pulled', object: 'web-1', namespace: 'ev-a' });
    await event({ type: 'Warning', reason: 'BackOff', message: 'in another namespace', object: 'web-1', namespace: 'ev-b' });
    await event({ type: 'Warning', reason: 'BackOff', message: 'Back-off restarting failed container', object: 'web-1', namespace: 'ev-a' });
    await waitFor(() => w.events().some((e) => e.reason === 'BackOff'), 'the Warning of ev-a on the watch', 30_000, { describe: () => w.text() });
    // Events of one watch arrive in order: the ones created before the Warning were filtered, not late.
    const got = w.events().filter((e) => e.source === 'kubernetes');
    expect(got.map((e) => [e.type, e.reason, e.object?.namespace, e.message])).toEqual([['Warning', 'BackOff', 'ev-a', 'Back-off restarting failed container']]);
    expect(got[0]).toMatchObject({ count: 1, object: { apiVersion: 'v1', kind: 'Pod', name: 'web-1' } });
    w.close();
  });

  test('repeats are merged: new Events about the same object and an Event counting up are one entry', async () => {
    for (let i = 0; i < 3; i++) await event({ type: 'Warning', reason: 'FailedMount', message: 'MountVolume.SetUp failed for volume "data"', object: 'db-0', namespace: 'ev-a', name: `db-0.mount-${i}` });
    // The way kubelet reports a repeat: the same Event with a higher count and a later lastTimestamp.
    const last = new Date(Date.now() + 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    await kube('PATCH', '/api/v1/namespaces/ev-a/events/db-0.mount-0', { count: 5, lastTimestamp: last }, 'application/merge-patch+json');
    let entries: ApiEvent[] = [];
    await waitFor(async () => (entries = (await kubeEvents()).filter((e) => e.reason === 'FailedMount')).some((e) => e.count === 7), 'one FailedMount entry with count 3 + 4', 30_000, {
      describe: () => JSON.stringify(entries),
    });
    expect(entries).toHaveLength(1);
    expect(Date.parse(entries[0]!.lastTime)).toBe(Date.parse(last));
  });

  test('with a label selector, only events whose involved object matches arrive', async () => {
    await configure({ types: ['Warning', 'Normal'], namespaces: ['ev-a'], label_selector: 'app=web', rate_limit: 100, burst: 1000 }, { labelSelector: 'app=web' });
    for (const [name, app] of [['web-config', 'web'], ['db-config', 'db']]) {
      await kube('POST', '/api/v1/namespaces/ev-a/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { app } } });
    }
    const configMapEvent = (name: string, reason: string, type: 'Normal' | 'Warning') =>
      kube('POST', '/api/v1/namespaces/ev-a/events', {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `${name}.${reason}`, namespace: 'ev-a' },
        involvedObject: { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'ev-a', name },
        type,
        reason,
        message: `${reason} ${name}`,
        count: 1,
        firstTimestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
        lastTimestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
        source: { component: 'e2e' },
      });
    await configMapEvent('db-config', 'Rejected', 'Warning');
    await configMapEvent('web-config', 'Updated', 'Normal');
    await configMapEvent('web-config', 'Invalid', 'Warning');
    await waitFor(async () => (await kubeEvents()).some((e) => e.reason === 'Invalid'), 'the web ConfigMap\'s Warning', 30_000);
    await waitFor(async () => (await kubeEvents()).some((e) => e.reason === 'Updated'), 'the web ConfigMap\'s Normal event (types now include Normal)', 30_000);
    expect((await kubeEvents()).some((e) => e.reason === 'Rejected')).toBe(false);
  });

  test('a flood above the rate limit is cut and counted; what was sent arrives', async () => {
    await configure({ types: ['Warning'], namespaces: ['ev-b'], rate_limit: 1, burst: 10 }, { rateLimit: 1, namespaces: ['ev-b'] });
    // Events created before agentk's first list of ev-b completes are that list's backlog and are
    // never sent: a canary that agentk sends shows the watch is live. A canary that fell into the
    // backlog is never sent, so another one follows every 5 s until one is. Its token is back a
    // second later (1/s), so the flood meets the whole burst.
    const beforeCanary = await agentMetric('agentk_cluster_events_sent_total');
    const canarySent = async () => (await agentMetric('agentk_cluster_events_sent_total')) > beforeCanary;
    for (let canary = 0; ; canary++) {
      await event({ type: 'Warning', reason: 'Canary', message: `canary ${canary}`, object: `flood-canary-${canary}`, namespace: 'ev-b' });
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline && !(await canarySent())) await new Promise((r) => setTimeout(r, 100));
      if (await canarySent()) break;
      if (canary >= 9) throw new Error('agentk sent none of 10 canary events of ev-b (5 s apart)');
    }
    await new Promise((r) => setTimeout(r, 1100));
    const sentBefore = await agentMetric('agentk_cluster_events_sent_total');
    const droppedBefore = await agentMetric('agentk_cluster_events_dropped_total', { reason: 'rate_limit' });
    const flood = 60;
    for (let i = 0; i < flood; i++) await event({ type: 'Warning', reason: 'Flood', message: `flood ${i}`, object: `flood-${i}`, namespace: 'ev-b' });
    await waitFor(
      async () => (await agentMetric('agentk_cluster_events_dropped_total', { reason: 'rate_limit' })) - droppedBefore + ((await agentMetric('agentk_cluster_events_sent_total')) - sentBefore) >= flood,
      'every flooded event to be sent or dropped by agentk',
      30_000,
    );
    const sent = (await agentMetric('agentk_cluster_events_sent_total')) - sentBefore;
    const dropped = (await agentMetric('agentk_cluster_events_dropped_total', { reason: 'rate_limit' })) - droppedBefore;
    expect(sent + dropped).toBe(flood);
    expect(dropped).toBeGreaterThan(flood / 3);
    expect(sent).toBeGreaterThanOrEqual(10);
    await waitFor(async () => (await kubeEvents('?limit=1000')).filter((e) => e.reason === 'Flood').length === sent, `the ${sent} events agentk sent to be at kas`, 30_000);
  });
});
