/**
 * GitOps apply against a real kube-apiserver: leader election with a real Lease, and (below) the
 * applier: server-side apply, inventory, prune, drift, inventory policies.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Agentk } from '../src/agent/app.js';
import { gitlabToKasJwt } from '../test/support/fake-gitlab.js';
import { TestGitRepo } from '../test/support/git-repo.js';
import { readAll } from '../test/support/streams.js';
import { startStack, type Stack } from '../test/support/stack.js';
import { ApiServerClient, type ApiServerConfig } from '../src/agent/kubernetes-api/api-server.js';
import { KubeJson } from '../src/agent/kubernetes-api/kube-json.js';
import { LeaderElector } from '../src/agent/leader-election/leader-elector.js';
import { Applier, type ApplyResult } from '../src/agent/gitops/applier.js';
import { inventoryId as inventoryIdOf } from '../src/agent/gitops/inventory.js';
import { ProjectRunner } from '../src/agent/gitops/project-runner.js';
import type { ManifestSettings, ManifestSnapshot } from '../src/agent/gitops/snapshot.js';
import { startCluster, type Cluster } from './support/cluster.js';
import { waitFor } from '../test/support/wait.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

let cluster: Cluster;
const clients: ApiServerClient[] = [];

function apiServerConfig(c: Cluster): ApiServerConfig {
  return { url: new URL(c.url), tls: { ca: Buffer.from(c.caPem), rejectUnauthorized: true }, auth: { kind: 'token', token: c.adminToken }, source: 'e2e' };
}

function kube(): KubeJson {
  const client = new ApiServerClient(apiServerConfig(cluster), { logger });
  clients.push(client);
  return new KubeJson(client);
}

beforeAll(async () => {
  cluster = await startCluster();
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await cluster?.stop();
});

describe('leader election with a coordination.k8s.io/v1 Lease', () => {
  const timings = { leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 300 };

  async function leaseHolder(name: string): Promise<string | undefined> {
    const r = await cluster.request('GET', `/apis/coordination.k8s.io/v1/namespaces/default/leases/${name}`);
    return (r.json as { spec?: { holderIdentity?: string } } | null)?.spec?.holderIdentity;
  }

  test('exactly one of two candidates leads; a stopped leader hands over at once', async () => {
    const electors = ['pod-a', 'pod-b'].map((identity) => new LeaderElector({ kube: kube(), namespace: 'default', name: 'agentk-e2e-stop', identity, logger, ...timings }));
    const changes: string[] = [];
    for (const e of electors) e.onChange((leader) => changes.push(`${e.identity}:${leader}`));
    try {
      for (const e of electors) e.start();
      await waitFor(() => electors.some((e) => e.isLeader), 'a leader', 30_000);
      const leader = electors.find((e) => e.isLeader)!;
      const other = electors.find((e) => e !== leader)!;
      // Several renewals later there is still exactly one, and the Lease names it.
      await new Promise((r) => setTimeout(r, timings.retryPeriodMs * 5));
      expect(electors.filter((e) => e.isLeader)).toEqual([leader]);
      expect(await leaseHolder('agentk-e2e-stop')).toBe(leader.identity);

      // A graceful stop releases the lease: the other takes over at its next try, well within the lease duration.
      const stoppedAt = Date.now();
      await leader.stop();
      expect(leader.isLeader).toBe(false);
      await waitFor(() => other.isLeader, 'the other candidate to take over', 30_000);
      const handover = Date.now() - stoppedAt;
      expect(await leaseHolder('agentk-e2e-stop')).toBe(other.identity);
      logger.info({ handover }, 'handover after a graceful stop');
      expect(changes).toContain(`${leader.identity}:false`);
      expect(changes).toContain(`${other.identity}:true`);
    } finally {
      for (const e of electors) await e.stop();
    }
  }, 90_000);

  test('a leader that dies without releasing is replaced after the lease expires, not before', async () => {
    // The "killed" leader: its requests start failing (its API server connection is gone) and it never releases.
    let dead = false;
    const realKube = kube();
    const dying: KubeJson = {
      request: (...args: Parameters<KubeJson['request']>) => (dead ? Promise.reject(new Error('killed')) : realKube.request(...args)),
    } as KubeJson;
    const first = new LeaderElector({ kube: dying, namespace: 'default', name: 'agentk-e2e-kill', identity: 'pod-killed', logger, ...timings });
    first.start();
    await waitFor(() => first.isLeader, 'the first candidate to lead', 30_000);
    const second = new LeaderElector({ kube: kube(), namespace: 'default', name: 'agentk-e2e-kill', identity: 'pod-survivor', logger, ...timings });
    try {
      second.start();
      await new Promise((r) => setTimeout(r, timings.retryPeriodMs * 4));
      expect(second.isLeader).toBe(false);
      dead = true;
      const killedAt = Date.now();
      await waitFor(() => second.isLeader, 'the survivor to take over', 30_000);
      const takeover = Date.now() - killedAt;
      // Within the lease duration after the last renewal (plus one retry period and scheduling slack).
      expect(takeover).toBeLessThan(timings.leaseDurationMs * 3);
      // The dead leader noticed it could not renew and stopped leading on its own.
      await waitFor(() => !first.isLeader, 'the dead leader to step down', 30_000);
      expect(await leaseHolder('agentk-e2e-kill')).toBe('pod-survivor');
      const lease = await cluster.request('GET', '/apis/coordination.k8s.io/v1/namespaces/default/leases/agentk-e2e-kill');
      expect((lease.json as { spec: { leaseTransitions: number } }).spec.leaseTransitions).toBe(1);
    } finally {
      await first.stop();
      await second.stop();
    }
  }, 90_000);
});

const SETTINGS: ManifestSettings = {
  defaultNamespace: 'default',
  reconcileTimeoutMs: 120_000,
  dryRunStrategy: 'none',
  prune: true,
  pruneTimeoutMs: 60_000,
  // No garbage collector runs here: foreground deletion would leave objects waiting for it.
  prunePropagationPolicy: 'background',
  inventoryPolicy: 'must_match',
};

let commitCounter = 0;
function snapshot(projectId: string, files: Record<string, string>, overrides: Partial<ManifestSnapshot> = {}, settings: Partial<ManifestSettings> = {}): ManifestSnapshot {
  return {
    projectId,
    commit: `c${++commitCounter}`.padEnd(40, '0'),
    settings: { ...SETTINGS, ...settings },
    complete: true,
    errors: [],
    files: Object.entries(files).map(([path, text]) => ({ path, data: Buffer.from(text) })),
    ...overrides,
  };
}

const CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget, listKind: WidgetList }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: { type: object, x-kubernetes-preserve-unknown-fields: true }
`;

function baseProject(): Record<string, string> {
  const configMaps = Array.from({ length: 50 }, (_, i) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${i}\n  namespace: gitops-e2e\ndata:\n  index: "${i}"\n`).join('---\n');
  return {
    'namespace.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: gitops-e2e\n',
    // The custom resource comes in a file sorted before its definition: the applier orders them.
    'a-widget.yaml': 'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: my-widget\n  namespace: gitops-e2e\nspec:\n  size: 3\n',
    'crd.yaml': CRD,
    'app/deployment.json': JSON.stringify({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', namespace: 'gitops-e2e' },
      spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx:1.25' }] } } },
    }),
    // No namespace: it goes to the default namespace of the project. (Kubernetes 1.20's server-side
    // apply needs the port's protocol spelled out: it is a key of the list.)
    'app/service.yml': 'apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: { app: web }\n  ports: [{ port: 80, targetPort: 8080, protocol: TCP }]\n',
    'app/configmaps.yaml': configMaps,
  };
}

function count(result: ApplyResult, action: string): number {
  return result.objects.filter((o) => o.action === action).length;
}

async function getObject(path: string): Promise<Record<string, unknown> | null> {
  const r = await cluster.request('GET', path);
  if (r.status === 404) return null;
  if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.body.toString()}`);
  return r.json as Record<string, unknown>;
}

function inventoryKeys(cm: Record<string, unknown> | null): string[] {
  return Object.keys((cm?.data as Record<string, string> | undefined) ?? {}).sort();
}

describe('applying manifest snapshots', () => {
  let applier: Applier;
  const project = 'group/manifests';
  const inventoryPath = () => `/api/v1/namespaces/default/configmaps/inventory-${inventoryIdOf('42', project)}`;

  beforeAll(() => {
    applier = new Applier({ kube: kube(), agentId: '42', logger });
  });

  test('a Namespace, a CRD and its custom resource, a Deployment, a Service and 50 ConfigMaps are applied with server-side apply', async () => {
    const result = await applier.apply(snapshot(project, baseProject()));
    expect(result.errors).toEqual([]);
    expect(result.failed).toBe(0);
    expect(result.applied).toBe(1 + 1 + 1 + 1 + 1 + 50);
    expect(count(result, 'created')).toBe(55);

    const widget = await getObject('/apis/example.com/v1/namespaces/gitops-e2e/widgets/my-widget');
    expect((widget?.spec as { size: number }).size).toBe(3);
    const cm = await getObject('/api/v1/namespaces/gitops-e2e/configmaps/cm-49');
    expect((cm?.data as Record<string, string>).index).toBe('49');
    const metadata = cm!.metadata as { annotations: Record<string, string>; managedFields: Array<{ manager: string; operation: string }> };
    expect(metadata.annotations['config.k8s.io/owning-inventory']).toBe(inventoryIdOf('42', project));
    expect(metadata.managedFields.some((f) => f.manager === 'agentk' && f.operation === 'Apply')).toBe(true);
    expect(await getObject('/api/v1/namespaces/default/services/web')).not.toBeNull();
    expect(await getObject('/apis/apps/v1/namespaces/gitops-e2e/deployments/web')).not.toBeNull();

    const inventory = await getObject(inventoryPath());
    expect((inventory?.metadata as { labels: Record<string, string> }).labels['cli-utils.sigs.k8s.io/inventory-id']).toBe(inventoryIdOf('42', project));
    expect(inventoryKeys(inventory)).toHaveLength(55);
    expect(inventoryKeys(inventory)).toContain('gitops-e2e_my-widget_example.com_Widget');
    expect(inventoryKeys(inventory)).toContain('_gitops-e2e__Namespace');

    // The same commit again changes nothing.
    const again = await applier.apply(snapshot(project, baseProject()));
    expect(again.errors).toEqual([]);
    expect(again.unchanged).toBe(55);
    expect(again.applied).toBe(0);
  }, 120_000);

  test('an object that left the manifests is pruned', async () => {
    const files = baseProject();
    files['app/configmaps.yaml'] = files['app/configmaps.yaml']!.split('---\n').slice(0, 49).join('---\n'); // cm-49 goes
    delete files['app/service.yml'];
    const result = await applier.apply(snapshot(project, files));
    expect(result.errors).toEqual([]);
    expect(result.pruned).toBe(2);
    expect(result.objects.filter((o) => o.action === 'pruned').map((o) => `${o.kind}/${o.name}`).sort()).toEqual(['ConfigMap/cm-49', 'Service/web']);
    expect(await getObject('/api/v1/namespaces/gitops-e2e/configmaps/cm-49')).toBeNull();
    expect(await getObject('/api/v1/namespaces/default/services/web')).toBeNull();
    expect(inventoryKeys(await getObject(inventoryPath()))).toHaveLength(53);
  }, 120_000);

  test('a broken file: the rest is applied, nothing is pruned, the file and the reason are reported', async () => {
    const files = baseProject();
    files['app/configmaps.yaml'] = files['app/configmaps.yaml']!.split('---\n').slice(0, 48).join('---\n'); // cm-48 leaves too
    delete files['app/service.yml'];
    files['broken.yaml'] = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n';
    files['nameless.yaml'] = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n';
    files['app/new.yaml'] = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: brand-new\n  namespace: gitops-e2e\n';
    const result = await applier.apply(snapshot(project, files));
    expect(result.errors.map((e) => e.path).sort()).toEqual(['broken.yaml', 'nameless.yaml']);
    expect(result.errors.find((e) => e.path === 'broken.yaml')!.message).toMatch(/YAML/);
    expect(result.errors.find((e) => e.path === 'nameless.yaml')!.message).toMatch(/metadata\.name/);
    expect(result.failed).toBe(2);
    expect(result.pruned).toBe(0);
    expect(result.pruneSkipped).toMatch(/could not be decoded/);
    expect(result.applied).toBe(1);
    expect(await getObject('/api/v1/namespaces/gitops-e2e/configmaps/brand-new')).not.toBeNull();
    // cm-48 is still there, and still in the inventory so a clean apply prunes it later.
    expect(await getObject('/api/v1/namespaces/gitops-e2e/configmaps/cm-48')).not.toBeNull();
    expect(inventoryKeys(await getObject(inventoryPath()))).toContain('gitops-e2e_cm-48__ConfigMap');

    // A commit that cannot be read completely prunes nothing either.
    delete files['broken.yaml'];
    delete files['nameless.yaml'];
    const incomplete = await applier.apply(snapshot(project, files, { complete: false, errors: [{ code: 'file_too_large', message: 'too big', path: 'huge.yaml' }] }));
    expect(incomplete.pruned).toBe(0);
    expect(incomplete.pruneSkipped).toMatch(/completely/);
    expect(await getObject('/api/v1/namespaces/gitops-e2e/configmaps/cm-48')).not.toBeNull();

    // The next clean apply prunes it.
    const clean = await applier.apply(snapshot(project, files));
    expect(clean.errors).toEqual([]);
    expect(clean.objects.filter((o) => o.action === 'pruned').map((o) => o.name)).toEqual(['cm-48']);
    expect(await getObject('/api/v1/namespaces/gitops-e2e/configmaps/cm-48')).toBeNull();
  }, 120_000);

  test('an object refused by the API server is reported and prevents prune', async () => {
    const files = { 'a.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: refused-a\ndata:\n  x: "1"\n', 'b.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: refused-b\n' };
    const first = await applier.apply(snapshot('refusals', files));
    expect(first.applied).toBe(2);
    const second = await applier.apply(snapshot('refusals', { 'a.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: refused-a\ndata:\n  x: [1, 2]\n' }));
    expect(second.failed).toBe(1);
    expect(second.errors[0]).toMatchObject({ path: 'a.yaml', object: 'ConfigMap default/refused-a' });
    expect(second.pruned).toBe(0);
    expect(await getObject('/api/v1/namespaces/default/configmaps/refused-b')).not.toBeNull();
  }, 60_000);

  test('inventory_policy: an object of another inventory is refused under must_match and adopted under adopt_all', async () => {
    const foreign = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'shared', namespace: 'default', annotations: { 'config.k8s.io/owning-inventory': 'someone-else' } }, data: { owner: 'other' } };
    expect((await cluster.request('POST', '/api/v1/namespaces/default/configmaps', foreign)).status).toBe(201);
    const unowned = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'unowned', namespace: 'default' }, data: { owner: 'none' } };
    expect((await cluster.request('POST', '/api/v1/namespaces/default/configmaps', unowned)).status).toBe(201);
    const files = {
      'shared.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  owner: us\n',
      'unowned.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unowned\ndata:\n  owner: us\n',
    };

    const refused = await applier.apply(snapshot('policies', files, {}, { inventoryPolicy: 'must_match' }));
    expect(refused.failed).toBe(2);
    expect(refused.objects.find((o) => o.name === 'shared')!.reason).toMatch(/another inventory \(someone-else\)/);
    expect(refused.objects.find((o) => o.name === 'unowned')!.reason).toMatch(/no inventory/);
    expect(((await getObject('/api/v1/namespaces/default/configmaps/shared'))!.data as Record<string, string>).owner).toBe('other');

    const some = await applier.apply(snapshot('policies', files, {}, { inventoryPolicy: 'adopt_if_no_inventory' }));
    expect(some.objects.find((o) => o.name === 'unowned')).toMatchObject({ action: 'configured', adopted: true });
    expect(some.objects.find((o) => o.name === 'shared')).toMatchObject({ action: 'failed' });

    const adopted = await applier.apply(snapshot('policies', files, {}, { inventoryPolicy: 'adopt_all' }));
    expect(adopted.failed).toBe(0);
    expect(adopted.objects.find((o) => o.name === 'shared')).toMatchObject({ action: 'configured', adopted: true });
    const shared = (await getObject('/api/v1/namespaces/default/configmaps/shared'))!;
    expect((shared.data as Record<string, string>).owner).toBe('us');
    expect((shared.metadata as { annotations: Record<string, string> }).annotations['config.k8s.io/owning-inventory']).toBe(inventoryIdOf('42', 'policies'));
  }, 60_000);

  test('dry runs: client only decodes, server validates against the API server and stores nothing', async () => {
    const files = { 'dry.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry-run-only\n' };
    const client = await applier.apply(snapshot('dry', files, {}, { dryRunStrategy: 'client' }));
    expect(client.objects).toMatchObject([{ name: 'dry-run-only', action: 'validated' }]);
    const server = await applier.apply(snapshot('dry', files, {}, { dryRunStrategy: 'server' }));
    expect(server.errors).toEqual([]);
    expect(server.objects).toMatchObject([{ name: 'dry-run-only', action: 'created' }]);
    expect(await getObject('/api/v1/namespaces/default/configmaps/dry-run-only')).toBeNull();
    expect(await getObject(`/api/v1/namespaces/default/configmaps/inventory-${inventoryIdOf('42', 'dry')}`)).toBeNull();
  }, 60_000);

  test('drift: a field changed by hand is restored by the periodic reconcile', async () => {
    const results: ApplyResult[] = [];
    const runner = new ProjectRunner({ applier, reconcilePeriodMs: 1000, logger, onResult: (r) => results.push(r) });
    try {
      await runner.submit(snapshot('drift', { 'cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: drifting\ndata:\n  colour: blue\n' }));
      expect(results[0]!.applied).toBe(1);
      const patched = await cluster.request('PATCH', '/api/v1/namespaces/default/configmaps/drifting', { data: { colour: 'red' } }, { contentType: 'application/merge-patch+json' });
      expect(patched.status).toBe(200);
      await waitFor(async () => ((await getObject('/api/v1/namespaces/default/configmaps/drifting'))!.data as Record<string, string>).colour === 'blue', 'the reconcile to restore the field', 30_000);
      expect(results.some((r) => r.objects.some((o) => o.name === 'drifting' && o.action === 'configured'))).toBe(true);
    } finally {
      await runner.stop();
    }
  }, 60_000);
});

describe('the full path: kas reads a Git repository, the leader agentk applies, kas reports', () => {
  let dir: string;
  let repo: TestGitRepo;
  let stack: Stack;
  const secret = randomBytes(32);
  const agents: Agentk[] = [];
  const leaseTimings = { leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 300 };

  function gitPush(projectId: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const body = Buffer.from(JSON.stringify({ project: { id: projectId, full_path: 'demo/apps' } }));
      const req = http.request(`http://${stack.kas.addresses.api}/api/v1/git_push_event`, { method: 'POST', agent: false, headers: { authorization: `Bearer ${gitlabToKasJwt(secret)}`, 'content-type': 'application/json', 'content-length': String(body.length) } }, (res) => {
        readAll(res).then(() => resolve(res.statusCode ?? 0), reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  async function apiStatus(): Promise<{ agent_id: number; projects: Array<Record<string, unknown>> }> {
    const res = await fetch(`http://${stack.kas.addresses.api}/api/v1/agents/1/gitops`, { headers: { authorization: `Bearer ${gitlabToKasJwt(secret)}` } });
    expect(res.status).toBe(200);
    return (await res.json()) as { agent_id: number; projects: Array<Record<string, unknown>> };
  }

  async function configMapValue(name: string): Promise<string | undefined> {
    const cm = await getObject(`/api/v1/namespaces/fullpath/configmaps/${name}`);
    return (cm?.data as Record<string, string> | undefined)?.value;
  }

  const leaderStates = new Map<Agentk, boolean>();
  const isLeaderNow = (a: Agentk) => leaderStates.get(a) === true;
  const leader = () => agents.filter(isLeaderNow);
  /** Reads each replica's agentk_leader gauge. */
  async function refreshLeaders(): Promise<void> {
    for (const a of agents) {
      const metric = await a.metrics.registry.getSingleMetric('agentk_leader')!.get();
      leaderStates.set(a, metric.values[0]?.value === 1);
    }
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gitops-apply-e2e-'));
    repo = new TestGitRepo(join(dir, 'repo'));
    repo.commit({
      'ns.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fullpath\n',
      'cms.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n  value: hello\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leaving\ndata:\n  value: bye\n',
    });
    mkdirSync(join(dir, 'configs', 'agent-one'), { recursive: true });
    writeFileSync(join(dir, 'configs', 'agent-one', 'config.yaml'), 'gitops:\n  manifest_projects:\n    - id: demo/apps\n      default_namespace: fullpath\n      prune_propagation_policy: background\n');
    writeFileSync(join(dir, 'api.secret'), secret.toString('base64'));
    stack = await startStack({
      upstream: { url: cluster.url, caPem: cluster.caPem, token: cluster.adminToken },
      startAgent: false,
      kas: {
        api: { listen: { address: '127.0.0.1:0', authentication_secret_file: join(dir, 'api.secret') } },
        // Polls are slow: every change below arrives through a push notification.
        agent: { gitops: { poll_period: '1h', cache_dir: join(dir, 'cache') }, configuration: { poll_period: '1h' } },
        standalone: { config_dir: join(dir, 'configs'), manifest_projects: [{ id: 'demo/apps', project_id: 77, git: { url: repo.dir } }] },
      },
      agent: { podNamespace: 'default', leaderElection: leaseTimings, gitopsReconcilePeriodMs: 60 * 60_000 },
    });
    for (const podName of ['agentk-a', 'agentk-b']) agents.push(await stack.startAgent({ podName }));
  }, 120_000);

  afterAll(async () => {
    for (const a of agents) await a.stop().catch(() => undefined);
    stack.agent = null;
    await stack?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('two agentk replicas: exactly one applies; a push is applied without waiting for the poll; a removed object is pruned; the result reaches the API', async () => {
    await waitFor(async () => (await configMapValue('greeting')) === 'hello', 'the first commit to be applied', 60_000);
    await refreshLeaders();
    expect(leader()).toHaveLength(1);
    const lease = await getObject('/apis/coordination.k8s.io/v1/namespaces/default/leases/agentk-1');
    const holder = (lease!.spec as { holderIdentity: string }).holderIdentity;
    expect(['agentk-a', 'agentk-b']).toContain(holder);
    const inventory = await getObject(`/api/v1/namespaces/fullpath/configmaps/inventory-${inventoryIdOf('1', 'demo/apps')}`);
    expect(inventoryKeys(inventory)).toHaveLength(3);
    // Only the leader applied: one field manager entry, the leader's metrics count the apply.
    const [a, b] = agents as [Agentk, Agentk];
    const applies = async (x: Agentk) => (await x.metrics.registry.getSingleMetric('agentk_gitops_applies_total')!.get()).values.reduce((n, v) => n + v.value, 0);
    await waitFor(async () => (await applies(leader()[0]!)) >= 1, 'the leader to count its apply');
    expect(await applies(leader()[0]! === a ? b : a)).toBe(0);

    // A push: the change lands without waiting for the 1 h poll; the removed ConfigMap is pruned.
    const c2 = repo.commit({ 'cms.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n  value: hello again\n' });
    expect(await gitPush(77)).toBe(204);
    await waitFor(async () => (await configMapValue('greeting')) === 'hello again', 'the pushed commit to be applied', 60_000);
    await waitFor(async () => (await getObject('/api/v1/namespaces/fullpath/configmaps/leaving')) === null, 'the removed ConfigMap to be pruned', 60_000);

    await waitFor(async () => (await apiStatus()).projects.some((p) => p.commit === c2), 'kas to have the result of the pushed commit', 30_000);
    const status = (await apiStatus()).projects.find((p) => p.project_id === 'demo/apps')!;
    expect(status).toMatchObject({ commit: c2, trigger: 'snapshot', applied: 1, pruned: 1, failed: 0, errors: [] });
    expect(status.objects).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'ConfigMap', name: 'leaving', action: 'pruned' })]));
    const metrics = await stack.kas.metrics.metrics();
    expect(metrics).toMatch(/kas_gitops_status_reports_total\{result="ok"\} [1-9]/);
  }, 120_000);

  test('stopping the leader hands over: the other replica applies the next push', async () => {
    await refreshLeaders();
    const old = leader()[0]!;
    const other = agents.find((x) => x !== old)!;
    await old.stop();
    agents.splice(agents.indexOf(old), 1);
    await waitFor(async () => {
      await refreshLeaders();
      return isLeaderNow(other);
    }, 'the other replica to lead', leaseTimings.leaseDurationMs * 5);
    repo.commit({ 'cms.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n  value: from the new leader\n' });
    expect(await gitPush(77)).toBe(204);
    await waitFor(async () => (await configMapValue('greeting')) === 'from the new leader', 'the new leader to apply the push', 60_000);
  }, 120_000);
});
