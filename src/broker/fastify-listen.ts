/** Starts a fastify app on a configured listen address; resolves with the `host:port` bound. */
import type { FastifyInstance } from 'fastify';
import { listenOn, parseListenAddress } from '../shared/address.js';

export async function listenFastify(app: FastifyInstance, address: string): Promise<string> {
  const addr = parseListenAddress(address);
  if (!addr) throw new Error(`not a listen address: ${address}`);
  await app.ready();
  return listenOn(app.server, addr);
}
