import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testCertificate } from '../../../test/support/certificate.js';
import { generateSelfSignedCertificate } from '../../shared/tls-cert.js';
import { ConfigError } from './config-error.js';
import { readTlsFiles } from './tls-files.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kas-tls-files-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function files(cert: string, key: string) {
  writeFileSync(join(dir, 'cert.pem'), cert);
  writeFileSync(join(dir, 'key.pem'), key);
  return { certificate_file: join(dir, 'cert.pem'), key_file: join(dir, 'key.pem') };
}

test('a certificate and key that do not make a pair are a configuration error at start, naming the keys', async () => {
  const a = await testCertificate();
  const b = await generateSelfSignedCertificate();
  for (const [cert, key, reason] of [
    [a.cert, b.key, 'the key does not belong to the certificate'],
    [a.cert, '', 'the key does not parse'],
    ['no certificate here', a.key, 'holds no PEM certificate'],
  ] as const) {
    const read = () => readTlsFiles('agent.listen', files(cert, key));
    expect(read).toThrow(ConfigError);
    expect(read).toThrow(`agent.listen.certificate_file and agent.listen.key_file: ${reason}`);
  }
  expect(readTlsFiles('agent.listen', files(a.cert, a.key))?.cert.toString()).toBe(a.cert);
});
