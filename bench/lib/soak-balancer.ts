/**
 * A round-robin TCP balancer for the soak (an ingress in front of the kas replicas): each new
 * connection goes to the next backend that accepts it, and when either side of a pair closes, the
 * other is destroyed too, so a run with many connections and restarts leaves no socket behind.
 * (test/support/balancer.ts ends the backend side only half-way when the client leaves; a paused
 * backend socket then stays open after its peer reset it, which the soak's handle count shows.)
 */
import net from 'node:net';
import { listenLoopback } from '../../test/support/ports.js';

export interface SoakBalancer {
  address: string;
  close(): Promise<void>;
}

export async function startSoakBalancer(backends: () => string[]): Promise<SoakBalancer> {
  let next = 0;
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const server = net.createServer((client) => {
    track(client);
    client.on('error', () => undefined);
    const list = backends();
    const tryConnect = (attempt: number) => {
      if (client.destroyed || attempt >= list.length) return client.destroy();
      const target = list[(next + attempt) % list.length]!;
      const up = net.connect(Number(target.slice(target.lastIndexOf(':') + 1)), target.slice(0, target.lastIndexOf(':')));
      track(up);
      const onFail = () => tryConnect(attempt + 1);
      up.once('error', onFail);
      up.once('connect', () => {
        up.off('error', onFail);
        next++;
        up.on('error', () => undefined);
        // Either side going away takes the other with it, once what it still had to pass on is
        // written (pipe() ends the other side on a FIN; a paused socket would never see its peer go).
        const follow = (gone: net.Socket, other: net.Socket) =>
          gone.once('close', () => {
            if (other.destroyed) return;
            if (other.writableLength === 0) return other.destroy();
            other.end();
            setTimeout(() => other.destroy(), 1000).unref();
          });
        follow(client, up);
        follow(up, client);
        client.pipe(up).pipe(client);
      });
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
