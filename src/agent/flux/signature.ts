/**
 * Flux's `generic-hmac` Receiver: the caller signs the request body with the token of the Secret
 * the Receiver references, HMAC-SHA256, and sends it as `X-Signature: sha256=<hex>`; the
 * notification-controller recomputes it over the body it got and refuses a mismatch.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'X-Signature';

export function signGenericHmac(body: Buffer | string, token: string): string {
  return `sha256=${createHmac('sha256', token).update(body).digest('hex')}`;
}

/** Checks a signature the way the notification-controller does (tests and the e2e stand-in use it). */
export function verifyGenericHmac(body: Buffer | string, token: string, header: string | undefined): boolean {
  if (typeof header !== 'string') return false;
  const expected = Buffer.from(signGenericHmac(body, token));
  const given = Buffer.from(header);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** A new Receiver token: 32 random bytes, hex. */
export function newReceiverToken(): string {
  return randomBytes(32).toString('hex');
}
