/** Loopback ports for test servers: the OS picks a free one. */
import type { Server } from 'node:net';
import net from 'node:net';
import { listenOn } from '../../src/shared/address.js';

/** Starts `server` on 127.0.0.1 with a port the OS picks; resolves with that port. */
export async function listenLoopback(server: Server): Promise<number> {
  const bound = await listenOn(server, { host: '127.0.0.1', port: 0 });
  return Number(bound.slice(bound.lastIndexOf(':') + 1));
}

/** A port that was free on 127.0.0.1 a moment ago, for programs that must be told their port. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  const port = await listenLoopback(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
