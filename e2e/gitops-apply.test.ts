/**
 * GitOps apply against a real kube-apiserver: leader election with a real Lease, and (below) the
 * applier: server-side apply, inventory, prune, drift, inventory policies.
 */
import { pino } from 'pino';
import { ApiServerClient, type ApiServerConfig } from '../src/agent/kubernetes-api/api-server.js';
import { KubeJson } from '../src/agent/kubernetes-api/kube-json.js';
import { LeaderElector } from '../src/agent/leader-election/leader-elector.js';
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
