import type { V1DaemonSet, V1Deployment, V1Job, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import { checkWorkloadHealthSummary } from '../../protocol/workload-health.js';
import { DEFAULT_SUMMARY_LIMITS, sameSummary, summarize, type WorkloadObjects } from './summary.js';

const NOW = Date.parse('2026-01-01T12:00:00Z');
const MIN = 60_000;

function objects(partial: Partial<WorkloadObjects>): WorkloadObjects {
  return { deployments: [], statefulSets: [], daemonSets: [], pods: [], jobs: [], ...partial };
}

function deployment(name: string, replicas: number | undefined, available: number | undefined, namespace = 'default'): V1Deployment {
  return { metadata: { name, namespace }, spec: { replicas, selector: {}, template: {} }, status: { availableReplicas: available } };
}

function pod(name: string, status: V1Pod['status'], createdMinutesAgo = 1, namespace = 'default'): V1Pod {
  return { metadata: { name, namespace, creationTimestamp: new Date(NOW - createdMinutesAgo * MIN) }, status };
}

function waiting(reason: string, message?: string): V1Pod['status'] {
  return { phase: 'Pending', containerStatuses: [{ name: 'app', image: 'x', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason, message } } }] };
}

describe('workload health summary', () => {
  it('is empty when everything is healthy', () => {
    const { summary, nextChangeAt } = summarize(
      objects({
        deployments: [deployment('web', 3, 3)],
        statefulSets: [{ metadata: { name: 'db', namespace: 'data' }, spec: { replicas: 2, selector: {}, serviceName: 'db', template: {} }, status: { replicas: 2, availableReplicas: 2 } } as V1StatefulSet],
        daemonSets: [{ metadata: { name: 'agent', namespace: 'kube-system' }, status: { desiredNumberScheduled: 4, numberAvailable: 4, currentNumberScheduled: 4, numberMisscheduled: 0, numberReady: 4 } }],
        pods: [pod('ok', { phase: 'Running' }, 60)],
        jobs: [{ metadata: { name: 'done', namespace: 'default' }, status: { conditions: [{ type: 'Complete', status: 'True' }] } }],
      }),
      NOW,
    );
    expect(summary).toEqual({ namespaces: [], omitted_namespaces: 0, omitted_problems: 0 });
    expect(nextChangeAt).toBeNull();
  });

  it('lists Deployments, StatefulSets and DaemonSets with fewer available replicas than desired, with the numbers', () => {
    const sts: V1StatefulSet = { metadata: { name: 'db', namespace: 'default' }, spec: { replicas: 3, selector: {}, serviceName: 'db', template: {} }, status: { replicas: 3, readyReplicas: 1 } };
    const ds: V1DaemonSet = { metadata: { name: 'agent', namespace: 'default' }, status: { desiredNumberScheduled: 5, numberAvailable: 2, currentNumberScheduled: 5, numberMisscheduled: 0, numberReady: 2 } };
    const { summary } = summarize(objects({ deployments: [deployment('web', 3, 1), deployment('fresh', undefined, undefined)], statefulSets: [sts], daemonSets: [ds] }), NOW);
    expect(summary.namespaces).toEqual([
      {
        namespace: 'default',
        omitted: 0,
        problems: [
          { kind: 'Deployment', name: 'fresh', problem: 'Unavailable', desired: 1, available: 0 },
          { kind: 'Deployment', name: 'web', problem: 'Unavailable', desired: 3, available: 1 },
          { kind: 'StatefulSet', name: 'db', problem: 'Unavailable', desired: 3, available: 1 },
          { kind: 'DaemonSet', name: 'agent', problem: 'Unavailable', desired: 5, available: 2 },
        ],
      },
    ]);
  });

  it('does not list a Deployment scaled to zero', () => {
    expect(summarize(objects({ deployments: [deployment('off', 0, undefined)] }), NOW).summary.namespaces).toEqual([]);
  });

  it('lists Pods in CrashLoopBackOff, ImagePullBackOff and ErrImagePull (init containers too), with the container and message', () => {
    const init: V1Pod = pod('init', { phase: 'Pending', initContainerStatuses: [{ name: 'setup', image: 'x', imageID: '', ready: false, restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s' } } }] });
    const { summary } = summarize(
      objects({ pods: [pod('pull', waiting('ImagePullBackOff', 'Back-off pulling image "nope:1"')), pod('err', waiting('ErrImagePull')), init, pod('creating', waiting('ContainerCreating'))] }),
      NOW,
    );
    expect(summary.namespaces[0]!.problems).toEqual([
      { kind: 'Pod', name: 'err', problem: 'ErrImagePull', container: 'app' },
      { kind: 'Pod', name: 'init', problem: 'CrashLoopBackOff', container: 'setup', message: 'back-off 40s' },
      { kind: 'Pod', name: 'pull', problem: 'ImagePullBackOff', container: 'app', message: 'Back-off pulling image "nope:1"' },
    ]);
  });

  it('cuts long messages', () => {
    const { summary } = summarize(objects({ pods: [pod('p', waiting('CrashLoopBackOff', 'x'.repeat(10_000)))] }), NOW);
    const p = summary.namespaces[0]!.problems[0]!;
    expect('message' in p && p.message!.length).toBe(256);
  });

  it('lists a Pod Pending for more than 5 minutes, and tells when a younger one will cross the threshold', () => {
    const unschedulable = pod('stuck', { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available' }] }, 6);
    const young = pod('young', { phase: 'Pending' }, 2);
    const first = summarize(objects({ pods: [unschedulable, young, pod('running', { phase: 'Running' }, 60)] }), NOW);
    expect(first.summary.namespaces[0]!.problems).toEqual([
      { kind: 'Pod', name: 'stuck', problem: 'Pending', since: new Date(NOW - 6 * MIN).toISOString(), message: 'Unschedulable: 0/3 nodes are available' },
    ]);
    expect(first.nextChangeAt).toBe(NOW + 3 * MIN);
    const later = summarize(objects({ pods: [unschedulable, young] }), first.nextChangeAt!);
    expect(later.summary.namespaces[0]!.problems.map((p) => p.name)).toEqual(['stuck', 'young']);
    expect(later.nextChangeAt).toBeNull();
  });

  it('lists a Pod waiting to pull its image once, for the pull, even when it is Pending for long', () => {
    const { summary } = summarize(objects({ pods: [pod('pull', waiting('ImagePullBackOff'), 30)] }), NOW);
    expect(summary.namespaces[0]!.problems).toEqual([{ kind: 'Pod', name: 'pull', problem: 'ImagePullBackOff', container: 'app' }]);
  });

  it('lists Jobs whose Failed condition is True', () => {
    const failed: V1Job = { metadata: { name: 'migrate', namespace: 'default' }, status: { conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' }] } };
    const notYet: V1Job = { metadata: { name: 'retry', namespace: 'default' }, status: { conditions: [{ type: 'Failed', status: 'False' }] } };
    const { summary } = summarize(objects({ jobs: [failed, notYet] }), NOW);
    expect(summary.namespaces[0]!.problems).toEqual([
      { kind: 'Job', name: 'migrate', problem: 'Failed', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' },
    ]);
  });

  it('recovers: once the status is fixed the namespace leaves the summary', () => {
    const broken = summarize(objects({ deployments: [deployment('web', 2, 0)], pods: [pod('web-1', waiting('ImagePullBackOff'))] }), NOW).summary;
    expect(broken.namespaces).toHaveLength(1);
    const fixed = summarize(objects({ deployments: [deployment('web', 2, 2)], pods: [pod('web-1', { phase: 'Running', containerStatuses: [{ name: 'app', image: 'x', imageID: '', ready: true, restartCount: 0, state: { running: {} } }] })] }), NOW).summary;
    expect(fixed.namespaces).toEqual([]);
    expect(sameSummary(broken, fixed)).toBe(false);
  });

  it('groups by namespace in name order, and the same state gives the same summary whatever the order of the objects', () => {
    const list = [deployment('b', 1, 0, 'zeta'), deployment('a', 1, 0, 'alpha'), deployment('c', 1, 0, 'alpha')];
    const one = summarize(objects({ deployments: list }), NOW).summary;
    const two = summarize(objects({ deployments: [...list].reverse() }), NOW).summary;
    expect(one.namespaces.map((n) => n.namespace)).toEqual(['alpha', 'zeta']);
    expect(sameSummary(one, two)).toBe(true);
  });

  it('caps the problems per namespace and in all, and the namespaces, counting what it left out', () => {
    const deployments: V1Deployment[] = [];
    for (let ns = 0; ns < 6; ns++) for (let i = 0; i < 5; i++) deployments.push(deployment(`d${i}`, 1, 0, `ns${ns}`));
    const limits = { ...DEFAULT_SUMMARY_LIMITS, maxPerNamespace: 3, maxTotal: 10, maxNamespaces: 5 };
    const { summary } = summarize(objects({ deployments }), NOW, limits);
    expect(summary.namespaces.map((n) => [n.namespace, n.problems.length, n.omitted])).toEqual([
      ['ns0', 3, 2],
      ['ns1', 3, 2],
      ['ns2', 3, 2],
      ['ns3', 1, 4],
    ]);
    expect(summary.omitted_namespaces).toBe(2);
    expect(summary.omitted_problems).toBe(10);
    expect(() => checkWorkloadHealthSummary(summary)).not.toThrow();

    const manyNamespaces: V1Deployment[] = [];
    for (let ns = 0; ns < 8; ns++) manyNamespaces.push(deployment('d', 1, 0, `ns${ns}`));
    const byNamespaces = summarize(objects({ deployments: manyNamespaces }), NOW, limits).summary;
    expect(byNamespaces.namespaces).toHaveLength(5);
    expect(byNamespaces.omitted_namespaces).toBe(3);
    expect(byNamespaces.omitted_problems).toBe(3);
  });

  it('keeps within the protocol limits whatever the configured caps', () => {
    const pods: V1Pod[] = [];
    for (let i = 0; i < 3000; i++) pods.push(pod(`p${i}`, waiting('CrashLoopBackOff', 'm'.repeat(300)), 1, `ns${i % 300}`));
    const { summary } = summarize(objects({ pods }), NOW, { ...DEFAULT_SUMMARY_LIMITS, maxPerNamespace: 1e6, maxTotal: 1e6, maxNamespaces: 1e6 });
    expect(() => checkWorkloadHealthSummary(summary)).not.toThrow();
    expect(summary.namespaces.reduce((n, ns) => n + ns.problems.length + ns.omitted, 0) + summary.omitted_problems).toBe(3000);
  });

  it('skips objects without a name or namespace', () => {
    expect(summarize(objects({ deployments: [{ metadata: { name: 'x' }, spec: { replicas: 1, selector: {}, template: {} } }] }), NOW).summary.namespaces).toEqual([]);
  });
});
