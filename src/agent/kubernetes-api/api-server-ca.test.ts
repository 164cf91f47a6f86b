/**
 * The API server's CA file rotates (the service account's ca.crt, a kubeconfig's
 * certificate-authority): new connections trust the new CA without a restart, a connection opened
 * before goes on, and a broken new file keeps the CA in use, logged and counted.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../shared/logger.js';
import { generateSelfSignedCertificate, type CertificatePair } from '../../shared/tls-cert.js';
import { testCertificate } from '../../../test/support/certificate.js';
import { LogCapture } from '../../../test/support/logs.js';
import { waitFor } from '../../../test/support/wait.js';
import { AgentMetrics } from '../observability/metrics.js';
import { ApiServerClient, loadApiServerConfig } from './api-server.js';

let dir: string;
let server: https.Server;
let certA: CertificatePair;
let certB: CertificatePair;
beforeAll(async () => {
  certA = await testCertificate();
  certB = await generateSelfSignedCertificate();
});
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentk-api-ca-'));
  server = https.createServer({ cert: certA.cert, key: certA.key }, (req, res) => {
    if (req.url === '/stream') {
      // A long response, like a watch: a line now and one whenever the test asks.
      res.writeHead(200);
      res.write('first\n');
      server.once('more', () => res.end('second\n'));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ gitVersion: 'v1.32.0-test' }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

async function reloadCount(metrics: AgentMetrics, name: string): Promise<number> {
  const { values } = await metrics.registry.getSingleMetric(name)!.get();
  return values.find((v) => v.labels.file === 'api_server_ca')?.value ?? 0;
}

test('new connections to the API server trust a rotated CA file; a broken one keeps the CA in use', async () => {
  const caFile = join(dir, 'ca.crt');
  writeFileSync(caFile, certA.cert);
  const metrics = new AgentMetrics({ defaultMetrics: false });
  const logs = new LogCapture();
  const client = new ApiServerClient(
    { url: new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}`), tls: { ca: Buffer.from(certA.cert), caFile, rejectUnauthorized: true }, auth: { kind: 'none' }, source: 'in-cluster' },
    { logger: createLogger({ name: 'test', level: 'info', destination: logs }), metrics, caPollMs: 200 },
  );
  try {
    expect(await client.version()).toBe('v1.32.0-test');
    // A long request opened with CA A (a watch) ...
    const live = client.request(await client.requestOptions('GET', '/stream', []));
    live.end();
    const res = await new Promise<import('node:http').IncomingMessage>((r) => live.on('response', r));
    let body = '';
    res.on('data', (d: Buffer) => (body += d.toString()));
    await waitFor(() => body === 'first\n', 'the first line of the long response');

    // ... then the API server moves to a certificate of CA B, and the CA file to B.
    server.setSecureContext({ cert: certB.cert, key: certB.key });
    server.closeIdleConnections();
    writeFileSync(caFile, certB.cert);
    await waitFor(async () => (await reloadCount(metrics, 'agentk_tls_reloads_total')) >= 1, 'the CA file to be reloaded');
    expect(await client.version()).toBe('v1.32.0-test');
    server.emit('more');
    await waitFor(() => body === 'first\nsecond\n', 'the long response to go on after the rotation');

    // Idle connections closed now (the client sees it while the broken file is being noticed), so
    // the next request opens a new connection: it must still trust B.
    server.closeIdleConnections();
    writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n');
    await waitFor(async () => (await reloadCount(metrics, 'agentk_tls_reload_errors_total')) >= 1, 'the broken CA file to be counted');
    expect(await client.version()).toBe('v1.32.0-test');
    expect(logs.text).toContain('in-cluster certificate authority');
  } finally {
    client.close();
  }
});

test('a kubeconfig certificate-authority file is remembered to be followed; embedded data is not a file', () => {
  writeFileSync(join(dir, 'ca.crt'), certA.cert);
  const kubeconfig = (cluster: string) => {
    const file = join(dir, 'config');
    writeFileSync(file, `apiVersion: v1
kind: Config
clusters:
- name: one
  cluster: {server: 'https://127.0.0.1:6443', ${cluster}}
contexts:
- name: a
  context: {cluster: one, user: u}
current-context: a
users:
- name: u
  user: {token: t}
`);
    return file;
  };
  const fromFile = loadApiServerConfig({ kubeconfig: kubeconfig('certificate-authority: ca.crt') });
  expect(fromFile.tls.caFile).toBe(join(dir, 'ca.crt'));
  expect(fromFile.tls.ca?.toString()).toBe(certA.cert);
  const embedded = loadApiServerConfig({ kubeconfig: kubeconfig(`certificate-authority-data: ${Buffer.from(certA.cert).toString('base64')}`) });
  expect(embedded.tls.caFile).toBeUndefined();
  expect(embedded.tls.ca?.toString()).toBe(certA.cert);
});
