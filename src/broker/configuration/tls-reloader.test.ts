import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { Registry } from 'prom-client';
import { testCertificate } from '../../../test/support/certificate.js';
import { waitFor } from '../../../test/support/wait.js';
import { createLogger } from '../../shared/logger.js';
import { generateSelfSignedCertificate } from '../../shared/tls-cert.js';
import { listenerTls } from './tls-reloader.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kas-tls-reloader-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test('the secure context offered to listeners that make TLS sockets themselves follows a rotation', async () => {
  const a = await testCertificate();
  const b = await generateSelfSignedCertificate();
  const files = { certificate_file: join(dir, 'cert.pem'), key_file: join(dir, 'key.pem') };
  writeFileSync(files.certificate_file, a.cert);
  writeFileSync(files.key_file, a.key);
  const metrics = new Registry();
  const listener = listenerTls({ listener: 'kubernetes_api', keyPrefix: 'agent.kubernetes_api.listen', files, metrics, logger: createLogger({ name: 'test', level: 'silent' }) })!;
  // A plain TCP listener that starts TLS on each socket with the context of the moment.
  const server = net.createServer((socket) => {
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: listener.secureContext });
    secure.on('error', () => undefined);
    secure.on('secure', () => secure.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const served = () =>
    new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false }, () => {
        resolve(socket.getPeerCertificate().fingerprint256);
        socket.destroy();
      });
      socket.on('error', reject);
    });
  try {
    listener.follow(tls.createServer());
    expect(await served()).toBe(new X509Certificate(a.cert).fingerprint256);
    writeFileSync(files.certificate_file, b.cert);
    writeFileSync(files.key_file, b.key);
    const reloads = async () => (await metrics.getSingleMetric('kas_tls_reloads_total')!.get()).values.find((v) => v.labels.listener === 'kubernetes_api')?.value ?? 0;
    await waitFor(async () => (await reloads()) >= 1, 'the pair to be reloaded', 20_000, { intervalMs: 50 });
    expect(await served()).toBe(new X509Certificate(b.cert).fingerprint256);
  } finally {
    listener.close();
    await new Promise((r) => server.close(r));
  }
});
