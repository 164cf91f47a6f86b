/**
 * A round-robin TCP load balancer, standing in for an ingress in front of several kas replicas:
 * each new connection goes to the next backend that accepts it.
 */
import net from 'node:net';
import { listenLoopback } from './ports.js';

/** A round-robin TCP load balancer over the agent listeners of the replicas that accept connections. */
export async function startBalancer(backends: () => string[]): Promise<{ address: string; close(): Promise<void> }> {
  let next = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const list = backends();
    const tryConnect = (attempt: number) => {
      if (attempt >= list.length) return client.destroy();
      const [host, port] = list[(next + attempt) % list.length]!.split(':');
      const up = net.connect(Number(port), host);
      up.once('connect', () => {
        next++;
        sockets.add(up);
        up.on('close', () => sockets.delete(up));
        client.pipe(up).pipe(client);
        up.on('error', () => client.destroy());
        client.on('error', () => up.destroy());
      });
      up.once('error', () => tryConnect(attempt + 1));
    };
    tryConnect(0);
  });
  const port = await listenLoopback(server);
  return {
    address: `127.0.0.1:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

