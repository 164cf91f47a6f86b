/**
 * Certificates that rotate: kas's agent and proxy listeners follow their certificate and key files
 * (written in place, or swapped the way the kubelet updates a Secret volume), agentk follows the kas
 * CA file. New connections get the new certificate, live ones (agentk's session, a watch) go on, and
 * a broken new file keeps the pair in use, logged and counted.
 */
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { Registry } from 'prom-client';
import { generateSelfSignedCertificate, type CertificatePair } from '../../src/shared/tls-cert.js';
import { testCertificate } from '../support/certificate.js';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { proxyRequest, startStack, type Stack } from '../support/stack.js';
import { collectText, readAll } from '../support/streams.js';
import { waitFor } from '../support/wait.js';

let api: FakeKubeApi;
let stack: Stack | null = null;
let certA: CertificatePair;
let certB: CertificatePair;

beforeAll(async () => {
  api = await startFakeKubeApi();
  certA = await testCertificate();
  certB = await generateSelfSignedCertificate();
});
afterAll(() => api.close());
afterEach(async () => {
  await stack?.close();
  stack = null;
});

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

/** The fingerprint of the certificate a new TLS connection to `address` is shown. */
function servedFingerprint(address: string): Promise<string> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, servername: 'localhost', rejectUnauthorized: false }, () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      resolve(cert.fingerprint256);
    });
    socket.on('error', reject);
  });
}

async function counter(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  const found = values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
  return found?.value ?? 0;
}

const reloads = (s: Stack, listener: string) => counter(s.kas.metrics, 'kas_tls_reloads_total', { listener });
const reloadErrors = (s: Stack, listener: string) => counter(s.kas.metrics, 'kas_tls_reload_errors_total', { listener });

async function waitForReloads(s: Stack, count: number): Promise<void> {
  await waitFor(async () => (await reloads(s, 'agent')) >= count && (await reloads(s, 'kubernetes_api')) >= count, `${count} certificate reload(s) on both listeners`, 20_000, { intervalMs: 50 });
}

/** A GET through the proxy, trusting `ca`; resolves with the status. */
async function proxyGet(s: Stack, ca: string, path: string): Promise<number> {
  s.proxyCa = ca;
  const res = await proxyRequest(s, 'GET', path, { headers: { Authorization: s.bearer() } });
  await readAll(res);
  return res.statusCode!;
}

/** Starts a watch through the proxy and waits for its head; the returned text collects its events. */
async function openWatch(s: Stack) {
  const res = await proxyRequest(s, 'GET', '/api/v1/namespaces?watch=true', { headers: { Authorization: s.bearer() } });
  expect(res.statusCode).toBe(200);
  return collectText(res);
}

test('kas listeners give new connections a certificate rewritten in place, live sessions and watches go on', async () => {
  stack = await startStack({ upstream: api });
  const s = stack;
  const { agent: agentAddress, kubernetes_api: proxyAddress } = s.kas.addresses;
  expect(await servedFingerprint(agentAddress!)).toBe(fingerprint(certA.cert));
  const sessions = s.kas.registry.connections(1).map((c) => c.session);
  const watch = await openWatch(s);

  writeFileSync(join(s.dir, 'cert.pem'), certB.cert);
  writeFileSync(join(s.dir, 'key.pem'), certB.key);
  await waitForReloads(s, 1);

  expect(await servedFingerprint(agentAddress!)).toBe(fingerprint(certB.cert));
  expect(await servedFingerprint(proxyAddress!)).toBe(fingerprint(certB.cert));
  // The watch opened with certificate A still receives events, through agentk's live session
  // (agentk trusts only A: a redial would fail, so the session must be the one from before).
  api.addNamespace('after-rotation');
  await watch.until('after-rotation');
  expect(await proxyGet(s, certB.cert, '/api/v1/namespaces')).toBe(200);
  const now = s.kas.registry.connections(1).map((c) => c.session);
  expect(now.length).toBe(sessions.length);
  expect(now.every((session) => sessions.includes(session))).toBe(true);
  expect(await reloadErrors(s, 'agent')).toBe(0);
});

test('kas listeners follow a Secret volume whose ..data symlink is swapped, as the kubelet does', async () => {
  // The layout of a projected Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>.
  const volume = join(testDir(), 'volume');
  const version = (name: string, pair: CertificatePair) => {
    mkdirSync(join(volume, name), { recursive: true });
    writeFileSync(join(volume, name, 'tls.crt'), pair.cert);
    writeFileSync(join(volume, name, 'tls.key'), pair.key);
  };
  version('..2026_01', certA);
  symlinkSync('..2026_01', join(volume, '..data'));
  symlinkSync('..data/tls.crt', join(volume, 'tls.crt'));
  symlinkSync('..data/tls.key', join(volume, 'tls.key'));
  const files = { certificate_file: join(volume, 'tls.crt'), key_file: join(volume, 'tls.key') };
  stack = await startStack({ upstream: api, kas: { agent: { listen: files, kubernetes_api: { listen: files } } } });
  const s = stack;
  expect(await servedFingerprint(s.kas.addresses.kubernetes_api!)).toBe(fingerprint(certA.cert));
  const watch = await openWatch(s);

  version('..2026_02', certB);
  symlinkSync('..2026_02', join(volume, '..data_tmp'));
  renameSync(join(volume, '..data_tmp'), join(volume, '..data'));
  rmSync(join(volume, '..2026_01'), { recursive: true });
  await waitForReloads(s, 1);

  expect(await servedFingerprint(s.kas.addresses.agent!)).toBe(fingerprint(certB.cert));
  expect(await servedFingerprint(s.kas.addresses.kubernetes_api!)).toBe(fingerprint(certB.cert));
  api.addNamespace('after-swap');
  await watch.until('after-swap');
});

test('a broken rotated certificate or key keeps the pair in use, is logged naming the keys and counted', async () => {
  stack = await startStack({ upstream: api });
  const s = stack;
  writeFileSync(join(s.dir, 'cert.pem'), certB.cert);
  writeFileSync(join(s.dir, 'key.pem'), certB.key);
  await waitForReloads(s, 1);

  // A truncated certificate, then a key of another certificate.
  writeFileSync(join(s.dir, 'cert.pem'), certB.cert.slice(0, 120));
  await waitFor(async () => (await reloadErrors(s, 'agent')) >= 1 && (await reloadErrors(s, 'kubernetes_api')) >= 1, 'the broken certificate to be counted', 20_000, { intervalMs: 50 });
  expect(await servedFingerprint(s.kas.addresses.agent!)).toBe(fingerprint(certB.cert));
  expect(await servedFingerprint(s.kas.addresses.kubernetes_api!)).toBe(fingerprint(certB.cert));
  writeFileSync(join(s.dir, 'cert.pem'), certB.cert);
  writeFileSync(join(s.dir, 'key.pem'), certA.key);
  await waitFor(async () => (await reloadErrors(s, 'agent')) >= 2 && (await reloadErrors(s, 'kubernetes_api')) >= 2, 'the mismatched key to be counted', 20_000, { intervalMs: 50 });
  expect(await servedFingerprint(s.kas.addresses.kubernetes_api!)).toBe(fingerprint(certB.cert));
  expect(await proxyGet(s, certB.cert, '/api/v1/namespaces')).toBe(200);
  expect(await reloads(s, 'agent')).toBe(1);

  const warnings = s.kasLogs.entries.filter((e) => e.level === 40 && String(e.msg).includes('not usable'));
  const reasons = warnings.map((e) => String((e.err as { message?: string } | undefined)?.message));
  expect(reasons).toEqual(expect.arrayContaining([expect.stringContaining('agent.listen.certificate_file'), expect.stringContaining('agent.kubernetes_api.listen.certificate_file')]));
  expect(reasons.some((r) => r.includes('the key does not belong to the certificate'))).toBe(true);
});

test('agentk trusts a rotated kas CA file from its next dial, without a restart', async () => {
  const dir = testDir();
  const caFile = join(dir, 'kas-ca.pem');
  writeFileSync(caFile, certA.cert);
  stack = await startStack({ upstream: api, agent: { kasCaCert: Buffer.from(certA.cert), kasCaCertFile: caFile, kasConnections: 1 } });
  const s = stack;
  const agentMetrics = s.agent!.metrics.registry;

  // kas moves to a certificate of CA B, agentk's CA file to B.
  writeFileSync(join(s.dir, 'cert.pem'), certB.cert);
  writeFileSync(join(s.dir, 'key.pem'), certB.key);
  await waitForReloads(s, 1);
  writeFileSync(caFile, certB.cert);
  await waitFor(async () => (await counter(agentMetrics, 'agentk_tls_reloads_total', { file: 'kas_ca' })) >= 1, 'agentk to reload its kas CA', 20_000, { intervalMs: 50 });

  // kas ends the session: agentk dials again, trusting B.
  const old = s.kas.registry.connections(1)[0]!.session;
  old.close();
  await waitFor(() => s.kas.registry.connections(1).some((c) => c.session !== old), 'agentk to reconnect with the rotated CA', 20_000, { intervalMs: 50 });
  expect(await proxyGet(s, certB.cert, '/api/v1/namespaces')).toBe(200);

  // A broken CA file keeps B: the next dial still succeeds.
  writeFileSync(caFile, 'not a certificate\n');
  await waitFor(async () => (await counter(agentMetrics, 'agentk_tls_reload_errors_total', { file: 'kas_ca' })) >= 1, 'agentk to count the broken CA file', 20_000, { intervalMs: 50 });
  expect(s.agentLogs.text).toContain('--kas-ca-cert-file');
  const second = s.kas.registry.connections(1)[0]!.session;
  second.close();
  await waitFor(() => s.kas.registry.connections(1).some((c) => c.session !== second), 'agentk to reconnect with the CA it kept', 20_000, { intervalMs: 50 });
});

/** A folder of the test's own, removed after the tests. */
function testDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kas-cert-rotation-'));
  dirs.push(dir);
  return dir;
}
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
