/**
 * JWTs between kas and GitLab (and between kas replicas): kas signs every internal call to GitLab;
 * GitLab signs its calls to kas. HMAC only, with the shared secret: `none` and asymmetric
 * algorithms are never accepted, whatever the token's header says.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT, jwtVerify, type JWTPayload } from 'jose';

export const KAS_ISSUER = 'gitlab-kas';
export const GITLAB_AUDIENCE = 'gitlab';
export const KAS_AUDIENCE = 'gitlab-kas';
/** Header carrying kas's JWT on calls to GitLab (no "Bearer"). */
export const KAS_JWT_HEADER = 'Gitlab-Kas-Api-Request';
const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'];

/** A fresh token for one call from kas to GitLab: HS256, iss gitlab-kas, aud gitlab, valid 30 s. */
export async function signKasToGitLab(secret: Uint8Array): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(KAS_ISSUER)
    .setAudience(GITLAB_AUDIENCE)
    .setIssuedAt(now)
    .setNotBefore(now - 5)
    .setExpirationTime(now + 30)
    .sign(secret);
}

/** A token for a call between kas replicas: iss = aud = gitlab-kas, short-lived. */
export async function signKasToKas(secret: Uint8Array, lifetimeSeconds = 5): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(KAS_ISSUER)
    .setAudience(KAS_AUDIENCE)
    .setJti(randomUUID())
    .setIssuedAt(now)
    .setNotBefore(now - 5)
    .setExpirationTime(now + lifetimeSeconds)
    .sign(secret);
}

/**
 * Verifies a token GitLab (or, with `issuer`, another kas) signed for kas: an HMAC algorithm, the
 * audience gitlab-kas, within its time window (5 s of clock skew). Resolves with the claims, or
 * null for any invalid token. Never throws for a bad token.
 */
export async function verifyForKas(token: string, secret: Uint8Array, options: { issuer?: string } = {}): Promise<JWTPayload | null> {
  if (token.length > 8192) return null;
  try {
    const { payload } = await jwtVerify(token, secret, {
      algorithms: HMAC_ALGORITHMS,
      audience: KAS_AUDIENCE,
      clockTolerance: 5,
      requiredClaims: ['exp', 'iat'],
      ...(options.issuer !== undefined && { issuer: options.issuer }),
    });
    return payload;
  } catch {
    return null;
  }
}
