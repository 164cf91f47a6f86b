/** Loads a listener's certificate and key files; ConfigErrors name the configuration key. */
import { readFileSync } from 'node:fs';
import { ConfigError } from './config-error.js';

export interface TlsFiles {
  certificate_file?: string | undefined;
  key_file?: string | undefined;
}

export interface TlsPair {
  cert: Buffer;
  key: Buffer;
}

export function readTlsFiles(keyPrefix: string, files: TlsFiles): TlsPair | null {
  if (!files.certificate_file || !files.key_file) return null;
  const read = (key: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(`${keyPrefix}.${key}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  return { cert: read('certificate_file', files.certificate_file), key: read('key_file', files.key_file) };
}
