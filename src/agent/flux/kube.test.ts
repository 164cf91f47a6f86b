import { discoverFlux, type KubeAnswer, type KubeRequester } from './kube.js';

/** An API server's discovery answers: which group versions serve which resources. */
function apiServer(served: Record<string, string[]>): KubeRequester & { paths: string[] } {
  const paths: string[] = [];
  return {
    paths,
    request(_method: string, path: string): Promise<KubeAnswer> {
      paths.push(path);
      const resources = served[path.replace(/^\/apis\//, '')];
      if (!resources) return Promise.resolve({ status: 404, json: null, text: '' });
      return Promise.resolve({ status: 200, json: { resources: resources.map((name) => ({ name })) }, text: '' });
    },
  };
}

describe('discoverFlux', () => {
  test('prefers v1, falls back to v1beta2, per group', async () => {
    expect(await discoverFlux(apiServer({ 'source.toolkit.fluxcd.io/v1': ['gitrepositories'], 'notification.toolkit.fluxcd.io/v1': ['receivers'] }))).toEqual({ source: 'v1', notification: 'v1' });
    expect(await discoverFlux(apiServer({ 'source.toolkit.fluxcd.io/v1': ['gitrepositories'], 'notification.toolkit.fluxcd.io/v1beta2': ['receivers', 'alerts'] }))).toEqual({ source: 'v1', notification: 'v1beta2' });
    expect(await discoverFlux(apiServer({ 'source.toolkit.fluxcd.io/v1beta2': ['gitrepositories'], 'notification.toolkit.fluxcd.io/v1beta2': ['receivers'] }))).toEqual({ source: 'v1beta2', notification: 'v1beta2' });
  });

  test('null when either is missing (a group served without the resource counts as missing)', async () => {
    expect(await discoverFlux(apiServer({}))).toBeNull();
    expect(await discoverFlux(apiServer({ 'source.toolkit.fluxcd.io/v1': ['gitrepositories'] }))).toBeNull();
    expect(await discoverFlux(apiServer({ 'source.toolkit.fluxcd.io/v1': ['helmrepositories'], 'notification.toolkit.fluxcd.io/v1': ['receivers'] }))).toBeNull();
  });

  test('an API server that cannot answer is an error, not "no Flux"', async () => {
    const failing: KubeRequester = { request: () => Promise.resolve({ status: 503, json: null, text: 'unavailable' }) };
    await expect(discoverFlux(failing)).rejects.toThrow(/503/);
  });
});
