/**
 * The informer layer inside a real agentk (app.ts): `informers` reaches the API server agentk was
 * configured with (a kubeconfig: HTTPS, a base path, the agent's token), and stopping agentk stops
 * the informers after the modules.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSelfSignedCertificate } from '../../shared/tls-cert.js';
import { startFakeKubeApi, type FakeKubeApi } from '../../../test/support/fake-kube-api.js';
import { waitFor } from '../../../test/support/wait.js';
import type { Agentk } from '../app.js';
import { loadApiServerConfig } from '../kubernetes-api/api-server.js';
import { startTestAgent } from '../testing/agent-fixture.js';
import { FakeKas } from '../testing/fake-kas.js';
import { RESOURCES } from './informers.js';

const KAS_TOKEN = 'kas-agent-token-informers';
const SA_TOKEN = 'agent-service-account-token-informers';

let dir: string;
let kas: FakeKas;
let api: FakeKubeApi;
let agent: Agentk | undefined;

beforeAll(async () => {
  const cert = await generateSelfSignedCertificate();
  dir = mkdtempSync(join(tmpdir(), 'agentk-informers-'));
  kas = await FakeKas.start({ token: KAS_TOKEN, tls: cert, path: '/agent' });
  api = await startFakeKubeApi({ tls: cert, prefix: '/k8s', token: SA_TOKEN });
  ({ agent } = await startTestAgent({ kasAddress: kas.url, token: KAS_TOKEN, kasCaCert: cert.cert, apiServer: loadApiServerConfig({ kubeconfig: api.writeKubeconfig(dir), context: 'fake' }) }));
});

afterAll(async () => {
  await agent?.stop();
  await kas?.close();
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("agentk's informers list and watch its API server with its credentials, and stop with agentk", async () => {
  const namespaces = agent!.informers.acquire(RESOURCES.namespaces);
  await namespaces.waitForSync(AbortSignal.timeout(10_000));
  expect(namespaces.list().map((n) => n.metadata?.name)).toEqual(expect.arrayContaining(['default', 'kube-system', 'kube-public']));
  const added: string[] = [];
  namespaces.on((ev) => added.push(`${ev.type} ${ev.object.metadata?.name}`));
  api.addNamespace('informed');
  await waitFor(() => namespaces.get(undefined, 'informed') !== undefined, 'the watched namespace');
  expect(added).toEqual(['add informed']);
  const calls = api.requestsAt('/api/v1/namespaces');
  expect(calls.some((r) => /[?&]watch=1/.test(r.url))).toBe(true);
  for (const r of calls) {
    expect(r.url.startsWith('/k8s/api/v1/namespaces')).toBe(true);
    const auth = r.rawHeaders.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === 'authorization');
    expect(r.rawHeaders[auth + 1]).toBe(`Bearer ${SA_TOKEN}`);
  }
  expect(await agent!.metrics.registry.getSingleMetricAsString('agentk_informer_objects')).toMatch(/agentk_informer_objects\{resource="namespaces"\} [1-9]/);

  await agent!.stop();
  expect(await agent!.metrics.registry.getSingleMetricAsString('agentk_informer_objects')).toContain('agentk_informer_objects{resource="namespaces"} 0');
  expect(() => agent!.informers.acquire(RESOURCES.pods)).toThrow(/stopped/);
  agent = undefined;
});
