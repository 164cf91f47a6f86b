/** The involved object's labels: discovery finds the resource, the metadata GET gives the labels, both cached. */
import { ObjectLabels, type GetJson } from './object-labels.js';

function fakeApi(objects: Record<string, unknown>): { get: GetJson; calls: string[] } {
  const calls: string[] = [];
  const get: GetJson = async (path, accept) => {
    calls.push(path);
    if (path === '/api/v1') return { resources: [{ name: 'pods', kind: 'Pod', namespaced: true }, { name: 'pods/log', kind: 'Pod', namespaced: true }, { name: 'nodes', kind: 'Node', namespaced: false }] };
    if (path === '/apis/apps/v1') return { resources: [{ name: 'deployments', kind: 'Deployment', namespaced: true }] };
    expect(accept).toContain('as=PartialObjectMetadata');
    return objects[path] ?? null;
  };
  return { get, calls };
}

describe('ObjectLabels', () => {
  test('namespaced and cluster-scoped objects of core and named groups; cached', async () => {
    let now = 0;
    const { get, calls } = fakeApi({
      '/api/v1/namespaces/web/pods/api-0': { metadata: { labels: { app: 'api' } } },
      '/apis/apps/v1/namespaces/web/deployments/api': { metadata: { labels: { app: 'api', tier: 'back' } } },
      '/api/v1/nodes/n1': { metadata: {} },
    });
    const labels = new ObjectLabels(get, () => now);
    expect(await labels.lookup({ kind: 'Pod', namespace: 'web', name: 'api-0' })).toEqual({ app: 'api' });
    expect(await labels.lookup({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'web', name: 'api' })).toEqual({ app: 'api', tier: 'back' });
    expect(await labels.lookup({ apiVersion: 'v1', kind: 'Node', name: 'n1' })).toEqual({});
    const before = calls.length;
    expect(await labels.lookup({ kind: 'Pod', namespace: 'web', name: 'api-0' })).toEqual({ app: 'api' });
    expect(calls.length).toBe(before);
    now += 61_000;
    await labels.lookup({ kind: 'Pod', namespace: 'web', name: 'api-0' });
    expect(calls.length).toBe(before + 1);
  });

  test('an object that cannot be read, or of an unknown kind, has no labels known', async () => {
    const { get } = fakeApi({});
    const labels = new ObjectLabels(get);
    expect(await labels.lookup({ kind: 'Pod', namespace: 'web', name: 'gone' })).toBeNull();
    expect(await labels.lookup({ kind: 'Widget', namespace: 'web', name: 'w' })).toBeNull();
    expect(await labels.lookup({ kind: 'Pod', name: 'no-namespace' })).toBeNull();
  });
});
