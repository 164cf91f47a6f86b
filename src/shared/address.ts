/** `host:port` listen addresses, as operators write them (`:8080`, `127.0.0.1:0`, `[::1]:8080`). */
import type { AddressInfo } from 'node:net';

export interface ListenAddress {
  /** Undefined for every interface (`:8080`). */
  host: string | undefined;
  /** 0 binds any free port. */
  port: number;
}

/** Parses `host:port`; returns null when it is not one. */
export function parseListenAddress(text: string): ListenAddress | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  const host = m[1] ?? m[2];
  return { host: host === '' ? undefined : host, port };
}

/** The `host:port` a server actually bound (IPv6 hosts in brackets). */
export function formatAddress(address: AddressInfo): string {
  return address.family === 'IPv6' ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`;
}

/** Starts a Node server listening on a configured address; resolves with the `host:port` it bound. */
export function listenOn(server: import('node:net').Server, address: ListenAddress): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address.host, port: address.port }, () => {
      server.off('error', reject);
      resolve(formatAddress(server.address() as AddressInfo));
    });
  });
}
