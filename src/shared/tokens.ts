/** Secrets: read from files, compared in constant time, held only as hashes. */
import { hash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * SHA-256 of a token; what we keep in memory and compare, never the token itself. The one-shot
 * crypto.hash: this runs for every proxied request, and a Hash object cost half again as much.
 */
export function tokenDigest(token: string): Buffer {
  return hash('sha256', token, 'buffer');
}

/**
 * Constant-time comparison of two digests (length-independent: both are SHA-256). A presented token
 * is hashed once with tokenDigest, then compared with each stored digest.
 */
export function digestsMatch(presented: Buffer, digest: Buffer): boolean {
  return timingSafeEqual(presented, digest);
}

/** Reads a token file: trailing newline trimmed; an empty file is an error naming the file. */
export function readTokenFile(path: string): string {
  const token = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  if (token.length === 0) throw new Error(`token file ${path} is empty`);
  if ([...token].some((c) => c.charCodeAt(0) <= 0x20 || c.charCodeAt(0) === 0x7f)) throw new Error(`token file ${path} contains whitespace or control characters`);
  return token;
}
