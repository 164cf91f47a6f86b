/**
 * Load balancers standing in for an ingress in front of several kas replicas. `startBalancer`:
 * round robin, each new connection goes to the next backend that accepts it. `startIngress`: what
 * a real ingress controller does, which learns that a pod stops only by watching its readiness, so
 * it keeps sending new connections to a pod for a moment after the pod was told to stop.
 */
import http from 'node:http';
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
        // A side that closed leaves the other unpiped and paused: end it too, or it stays open forever.
        client.once('close', () => up.destroy());
        up.once('close', () => client.destroy());
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


/** A backend of `startIngress`: where connections go, and the readiness URL the ingress polls. */
export interface IngressBackend {
  address: string;
  readinessUrl: string;
}

/** The ingress model: its address, the backends it sends new connections to now, and close. */
export interface TestIngress {
  address: string;
  /** Addresses of the backends in rotation now (seen ready at the last poll). */
  inRotation(): string[];
  close(): Promise<void>;
}

/** GET `url`; true for a 2xx answer, false for any other answer, an error or no answer within 2 s. */
function probe(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/**
 * A TCP ingress over backends that it puts in rotation and takes out only by polling their
 * readiness every `pollMs`, as an ingress controller follows endpoints: a backend enters once its
 * readiness answered 2xx and leaves once a poll failed, even after `backends()` stopped listing it
 * (endpoint removal is asynchronous). New connections go round robin over the backends in rotation;
 * when the chosen one refuses, the client's connection is dropped, as a client of a real ingress
 * sees an error when the pod it was sent to no longer accepts.
 */
export async function startIngress(backends: () => IngressBackend[], options: { pollMs?: number } = {}): Promise<TestIngress> {
  const pollMs = options.pollMs ?? 100;
  const known = new Map<string, { backend: IngressBackend; inRotation: boolean; polling: boolean }>();
  let closed = false;
  const poll = () => {
    const listed = backends();
    for (const backend of listed) if (!known.has(backend.address)) known.set(backend.address, { backend, inRotation: false, polling: false });
    for (const [address, entry] of known) {
      if (entry.polling) continue;
      entry.polling = true;
      void probe(entry.backend.readinessUrl).then((ready) => {
        entry.polling = false;
        entry.inRotation = ready && !closed;
        if (!ready && !backends().some((b) => b.address === address)) known.delete(address);
      });
    }
  };
  poll();
  const timer = setInterval(poll, pollMs);
  const inRotation = () => [...known.values()].filter((e) => e.inRotation).map((e) => e.backend.address);
  let next = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    const list = inRotation();
    if (list.length === 0) return client.destroy();
    const [host, port] = list[next++ % list.length]!.split(':');
    const up = net.connect(Number(port), host);
    sockets.add(up);
    up.on('close', () => sockets.delete(up));
    up.once('connect', () => client.pipe(up).pipe(client));
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
    client.on('close', () => up.destroy());
  });
  const port = await listenLoopback(server);
  return {
    address: `127.0.0.1:${port}`,
    inRotation,
    async close() {
      closed = true;
      clearInterval(timer);
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
