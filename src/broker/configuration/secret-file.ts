/** Shared secrets (GitLab's, the API's, the private API's): standard Base64 of exactly 32 random bytes, in a file. */
import { readFileSync } from 'node:fs';
import { ConfigError } from './config-error.js';

export const SECRET_LENGTH = 32;

/** Reads and decodes a secret file; ConfigErrors name the configuration key and say what was expected. */
export function readSecretFile(key: string, path: string): Buffer {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${key}: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  const trimmed = text.replace(/\r?\n$/, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) || trimmed.length % 4 !== 0) {
    throw new ConfigError(`${key}: ${path} must hold the standard Base64 encoding of ${SECRET_LENGTH} random bytes`);
  }
  const secret = Buffer.from(trimmed, 'base64');
  if (secret.length !== SECRET_LENGTH) {
    throw new ConfigError(`${key}: ${path} decodes to ${secret.length} bytes; it must be exactly ${SECRET_LENGTH} (e.g. \`head -c 32 /dev/urandom | base64\`)`);
  }
  return secret;
}
