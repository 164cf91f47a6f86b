/** Loads a listener's certificate and key files; ConfigErrors name the configuration key. */
import { readFileSync } from 'node:fs';
import { checkKeyPair } from '../../shared/tls-check.js';
import { ConfigError } from './config-error.js';

export interface TlsFiles {
  certificate_file?: string | undefined;
  key_file?: string | undefined;
}

export interface TlsPair {
  cert: Buffer;
  key: Buffer;
}

/** Checks a certificate and key pair; throws an Error whose message names the configuration keys. */
export function checkTlsPair(keyPrefix: string, pair: TlsPair): TlsPair {
  try {
    checkKeyPair(pair.cert, pair.key);
  } catch (err) {
    throw new Error(`${keyPrefix}.certificate_file and ${keyPrefix}.key_file: ${(err as Error).message}`, { cause: err });
  }
  return pair;
}

/** Reads and checks the pair, or null when the listener has no TLS. Throws ConfigError. */
export function readTlsFiles(keyPrefix: string, files: TlsFiles): TlsPair | null {
  if (!files.certificate_file || !files.key_file) return null;
  const read = (key: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(`${keyPrefix}.${key}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  const pair = { cert: read('certificate_file', files.certificate_file), key: read('key_file', files.key_file) };
  try {
    return checkTlsPair(keyPrefix, pair);
  } catch (err) {
    throw new ConfigError((err as Error).message, { cause: err });
  }
}
