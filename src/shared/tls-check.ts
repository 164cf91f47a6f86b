/**
 * Checks of PEM files before they are used: a rotated file must be a whole, usable certificate (and
 * key) before it replaces the one in use, since Node accepts some broken input without complaint
 * (an empty key, a CA bundle with no certificate) and fails only at the next handshake.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import tls from 'node:tls';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** The certificates of a PEM bundle, parsed; throws when it holds none or one does not parse. */
export function parseCertificates(pem: Buffer | string): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new Error('holds no PEM certificate');
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new Error(`certificate ${i + 1} does not parse: ${(err as Error).message}`, { cause: err });
    }
  });
}

/**
 * Checks that `cert` (a PEM chain, the leaf first) and `key` make a usable server pair: both parse,
 * the key belongs to the leaf certificate, and Node can build a secure context of them.
 * Throws an Error saying what is wrong.
 */
export function checkKeyPair(cert: Buffer | string, key: Buffer | string): void {
  const [leaf] = parseCertificates(cert);
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new Error(`the key does not parse: ${(err as Error).message}`, { cause: err });
  }
  if (!leaf!.checkPrivateKey(privateKey)) throw new Error('the key does not belong to the certificate');
  tls.createSecureContext({ cert, key });
}

/** Checks a CA bundle to trust: at least one certificate, each parsing, usable by Node. Throws an Error. */
export function checkCaBundle(pem: Buffer | string): void {
  parseCertificates(pem);
  tls.createSecureContext({ ca: pem });
}
