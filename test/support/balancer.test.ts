/**
 * The ingress model of balancer.ts: it follows readiness only by polling, so it keeps sending new
 * connections to a backend until a poll saw it fail, even after the backend was no longer listed.
 */
import http from 'node:http';
import net from 'node:net';
import { startIngress } from './balancer.js';
import { listenLoopback } from './ports.js';
import { waitFor } from './wait.js';

/** A backend answering its name on every connection, and a readiness endpoint the test flips. */
async function backend(name: string) {
  let ready = true;
  const server = net.createServer((s) => s.end(name));
  const probe = http.createServer((_req, res) => {
    res.writeHead(ready ? 200 : 503);
    res.end();
  });
  const port = await listenLoopback(server);
  const probePort = await listenLoopback(probe);
  return {
    entry: { address: `127.0.0.1:${port}`, readinessUrl: `http://127.0.0.1:${probePort}/readiness` },
    setReady: (r: boolean) => (ready = r),
    async close() {
      await new Promise((r) => server.close(r));
      await new Promise((r) => probe.close(r));
    },
  };
}

/** What one connection through the ingress receives ('' when it was dropped). */
function through(address: string): Promise<string> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect(Number(port), host);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('close', () => resolve(Buffer.concat(chunks).toString()));
    s.on('error', () => undefined);
  });
}

test('the ingress takes a backend out of rotation only after a readiness poll saw it fail, listed or not', async () => {
  const a = await backend('a');
  const b = await backend('b');
  let listed = [a.entry, b.entry];
  // A long poll period: the test flips readiness between polls and sees the ingress lag.
  const ingress = await startIngress(() => listed, { pollMs: 60_000 });
  try {
    await waitFor(() => ingress.inRotation().length === 2, 'both backends in rotation');
    const answers = new Set<string>();
    for (let i = 0; i < 4; i++) answers.add(await through(ingress.address));
    expect([...answers].sort()).toEqual(['a', 'b']);
    // b is no longer listed and not ready, but no poll ran yet: it still gets new connections.
    listed = [a.entry];
    b.setReady(false);
    expect(ingress.inRotation()).toContain(b.entry.address);
    await b.close();
    const afterStop = [];
    for (let i = 0; i < 4; i++) afterStop.push(await through(ingress.address));
    expect(afterStop).toContain('');
    expect(afterStop).toContain('a');
  } finally {
    await ingress.close();
    await a.close();
  }
});

test('the ingress puts a backend in rotation once it is ready and drops one whose poll fails', async () => {
  const a = await backend('a');
  a.setReady(false);
  const ingress = await startIngress(() => [a.entry], { pollMs: 20 });
  try {
    await new Promise((r) => setTimeout(r, 100));
    expect(ingress.inRotation()).toEqual([]);
    expect(await through(ingress.address)).toBe('');
    a.setReady(true);
    await waitFor(() => ingress.inRotation().length === 1, 'the ready backend in rotation');
    expect(await through(ingress.address)).toBe('a');
    a.setReady(false);
    await waitFor(() => ingress.inRotation().length === 0, 'the failing backend out of rotation');
  } finally {
    await ingress.close();
    await a.close();
  }
});
