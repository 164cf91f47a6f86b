/**
 * The kinds of value a kas configuration key takes (durations, listen addresses, sizes, files), each
 * with the wording of its error, so every module's part of the configuration reads the same way.
 */
import { z } from 'zod';
import { parseListenAddress } from '../../shared/address.js';
import { parseDuration } from '../../shared/duration.js';

/** A duration string ("20s", "5m", "2h"), validated to milliseconds. */
export const duration = (def: string) =>
  z
    .string({ error: 'expected a duration string such as "20s", "5m" or "2h"' })
    .default(def)
    .transform((s, ctx) => {
      const ms = parseDuration(s);
      if (ms === null) {
        ctx.addIssue({ code: 'custom', message: `expected a duration such as "20s", "5m" or "2h", got ${JSON.stringify(s)}` });
        return z.NEVER;
      }
      return ms;
    });

/** A listen address "host:port" (port 0 picks a free port). */
export const address = (def: string) =>
  z
    .string({ error: 'expected a listen address "host:port"' })
    .default(def)
    .refine((s) => parseListenAddress(s) !== null, { message: 'expected a listen address "host:port" (port 0 picks a free port)' });

/** A number of bytes within [min, max]. */
export const size = (def: number, min: number, max: number) => z.number({ error: 'expected a number of bytes' }).int().min(min).max(max).default(def);

export const file = z.string({ error: 'expected a file path' }).min(1, 'expected a file path');

/** The certificate and key of a TLS listener (both or neither; see tlsPair). */
export const tlsFiles = {
  certificate_file: file.optional(),
  key_file: file.optional(),
};

export function tlsPair<T extends { certificate_file?: string | undefined; key_file?: string | undefined }>(v: T, ctx: z.RefinementCtx): void {
  if ((v.certificate_file === undefined) !== (v.key_file === undefined)) {
    ctx.addIssue({ code: 'custom', path: [v.certificate_file === undefined ? 'certificate_file' : 'key_file'], message: 'certificate_file and key_file go together' });
  }
}

export const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'expected a DNS label (lower-case letters, digits and "-")').max(63);
