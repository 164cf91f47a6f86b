/** The bearer token of a request: exactly one Authorization header of the form "Bearer <token>". */

/** Longest token we look at; anything longer is refused before hashing or forwarding. */
export const MAX_TOKEN_LENGTH = 4096;

/** `missing`: no Authorization header at all (as opposed to one that is malformed). */
export type BearerResult = { ok: true; token: string } | { ok: false; message: string; missing?: true };

/**
 * Reads the bearer token from raw header lines (Node keeps only the first of repeated Authorization
 * headers in `headers`, so a second one would otherwise go unnoticed).
 */
export function bearerToken(rawHeaders: readonly string[]): BearerResult {
  const values: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    // The length test first: most names are not 13 long, and lower-casing each would allocate.
    const name = rawHeaders[i]!;
    if (name.length === 13 && name.toLowerCase() === 'authorization') values.push(rawHeaders[i + 1]!);
  }
  if (values.length === 0) return { ok: false, message: 'missing Authorization header', missing: true };
  if (values.length > 1) return { ok: false, message: 'more than one Authorization header' };
  const m = /^Bearer ([\x21-\x7e]+)$/i.exec(values[0]!);
  if (!m) return { ok: false, message: 'expected "Authorization: Bearer <token>"' };
  if (m[1]!.length > MAX_TOKEN_LENGTH) return { ok: false, message: 'token too long' };
  return { ok: true, token: m[1]! };
}
