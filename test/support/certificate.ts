/** The TLS certificate of test servers on loopback. */
import { generateSelfSignedCertificate, type CertificatePair } from '../../src/shared/tls-cert.js';

let certPromise: Promise<CertificatePair> | null = null;

/** One self-signed certificate (for localhost and 127.0.0.1) per test process: making one takes a while. */
export function testCertificate(): Promise<CertificatePair> {
  certPromise ??= generateSelfSignedCertificate();
  return certPromise;
}
