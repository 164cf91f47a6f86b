/** How other replicas reach this one's private API. */
import { networkInterfaces } from 'node:os';
import { ConfigError } from '../configuration/config-error.js';

/**
 * OWN_PRIVATE_API_URL, else a local address in OWN_PRIVATE_API_CIDR, else the bound private API
 * address when it is not a wildcard.
 */
export function ownPrivateApiUrl(bound: string, env: NodeJS.ProcessEnv = process.env): string {
  if (env.OWN_PRIVATE_API_URL) return env.OWN_PRIVATE_API_URL;
  const port = bound.slice(bound.lastIndexOf(':') + 1);
  if (env.OWN_PRIVATE_API_CIDR) {
    const ip = addressInCidr(env.OWN_PRIVATE_API_CIDR);
    if (!ip) throw new ConfigError(`OWN_PRIVATE_API_CIDR: no local IPv4 address in ${env.OWN_PRIVATE_API_CIDR}`);
    return `ws://${ip}:${port}`;
  }
  const host = bound.slice(0, bound.lastIndexOf(':'));
  if (host === '0.0.0.0' || host === '[::]' || host === '::') throw new ConfigError('private_api.listen.address is a wildcard: set OWN_PRIVATE_API_URL or OWN_PRIVATE_API_CIDR so other replicas can reach this one');
  return `ws://${host}:${port}`;
}

function addressInCidr(cidr: string): string | null {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (!m) return null;
  const toInt = (parts: string[]) => parts.reduce((acc, p) => (acc << 8) + Number(p), 0) >>> 0;
  const base = toInt(m.slice(1, 5));
  const bits = Number(m[5]);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family !== 'IPv4') continue;
      if (((toInt(a.address.split('.')) & mask) >>> 0) === ((base & mask) >>> 0)) return a.address;
    }
  }
  return null;
}
