/**
 * A real client-node informer through kas: its start() resolves only once the watch's response head
 * has arrived, so a proxy that held back the head of a quiet watch kept it waiting forever.
 */
import { CoreV1Api, KubeConfig, makeInformer, type V1ConfigMap } from '@kubernetes/client-node';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { startStack, type Stack } from '../support/stack.js';

describe('client-node through the Kubernetes API proxy', () => {
  let upstream: FakeKubeApi;
  let stack: Stack;

  beforeAll(async () => {
    upstream = await startFakeKubeApi();
    stack = await startStack({ upstream });
  });

  afterAll(async () => {
    await stack?.close();
    await upstream?.close();
  });

  test('an informer on a namespace without events starts (the watch head arrives at once)', async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'kas', server: stack.proxyUrl, caData: Buffer.from(stack.proxyCa).toString('base64') }],
      users: [{ name: 'u', token: `pat:1:${stack.proxyToken}` }],
      contexts: [{ name: 'kas', cluster: 'kas', user: 'u' }],
      currentContext: 'kas',
    });
    const api = kc.makeApiClient(CoreV1Api);
    const informer = makeInformer<V1ConfigMap>(kc, '/api/v1/namespaces/kube-public/configmaps', () => api.listNamespacedConfigMap({ namespace: 'kube-public' }));
    informer.on('error', () => undefined);
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([informer.start().then(() => 'started'), new Promise<string>((r) => (timer = setTimeout(() => r('start() still pending after 15 s'), 15_000)))]);
    clearTimeout(timer);
    await informer.stop();
    expect(outcome).toBe('started');
  });
});
