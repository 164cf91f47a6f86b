/**
 * Self-signed certificates for the development setup and for tests: a certificate for localhost and
 * 127.0.0.1 (plus any extra names), ECDSA P-256, valid for a year.
 */
import selfsigned from 'selfsigned';

export interface CertificatePair {
  /** PEM certificate (also what a client trusts as its CA, since it is self-signed). */
  cert: string;
  /** PEM private key. */
  key: string;
}

export async function generateSelfSignedCertificate(extraNames: string[] = []): Promise<CertificatePair> {
  const dnsNames = ['localhost', ...extraNames.filter((n) => !/^[\d.:]+$/.test(n))];
  const ips = ['127.0.0.1', '::1', ...extraNames.filter((n) => /^[\d.:]+$/.test(n))];
  const notAfter = new Date();
  notAfter.setFullYear(notAfter.getFullYear() + 1);
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: true },
      { name: 'keyUsage', digitalSignature: true, keyCertSign: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [...dnsNames.map((value) => ({ type: 2 as const, value })), ...ips.map((ip) => ({ type: 7 as const, ip }))] },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}
