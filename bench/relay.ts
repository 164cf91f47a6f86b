/**
 * A plain TCP relay, run as its own process: every connection accepted on --listen is piped to a
 * new connection to --target, both ways, without parsing (`socket.pipe`). Two of them in a row
 * are the benchmark's "ceiling" path: the physical limit of any design with two extra processes
 * in the path on this machine. Half-close passes through (allowHalfOpen on both sides).
 *
 * With --delay-ms N the relay instead holds every chunk N ms before forwarding it, in each
 * direction (a long link in user space, for machines without `tc netem`); bandwidth is unlimited,
 * so a tunnel's throughput through it is bounded by its flow-control windows and the round trip.
 *
 *   node dist/bench/relay.js --listen 127.0.0.1:0 --target 127.0.0.1:8080 [--delay-ms 50] [--name relay1]
 *
 * Logs one JSON line `{"listener":"<name>","address":"host:port"}` once bound.
 */
import net from 'node:net';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function hostPort(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(':');
  return { host: text.slice(0, colon) || '127.0.0.1', port: Number(text.slice(colon + 1)) };
}

const listen = hostPort(arg('--listen') ?? '127.0.0.1:0');
const target = hostPort(arg('--target') ?? '');
const delayMs = Number(arg('--delay-ms') ?? 0);
const name = arg('--name') ?? 'relay';

/** Forwards what `from` reads to `to` after `delayMs`, in order, end included. */
function delayed(from: net.Socket, to: net.Socket): void {
  const queue: { due: number; chunk: Buffer | null }[] = [];
  let timer: NodeJS.Timeout | null = null;
  const flush = () => {
    timer = null;
    const now = Date.now();
    while (queue.length > 0 && queue[0]!.due <= now) {
      const { chunk } = queue.shift()!;
      if (chunk === null) to.end();
      else to.write(chunk);
    }
    if (queue.length > 0) timer = setTimeout(flush, queue[0]!.due - now);
  };
  const push = (chunk: Buffer | null) => {
    queue.push({ due: Date.now() + delayMs, chunk });
    if (timer === null) timer = setTimeout(flush, delayMs);
  };
  from.on('data', (chunk: Buffer) => push(chunk));
  from.on('end', () => push(null));
}

const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
  const upstream = net.connect({ ...target, allowHalfOpen: true, noDelay: true });
  const fail = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', fail);
  upstream.on('error', fail);
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
  if (delayMs > 0) {
    delayed(client, upstream);
    delayed(upstream, client);
  } else {
    client.pipe(upstream);
    upstream.pipe(client);
  }
});
server.listen({ ...listen, backlog: 4096 }, () => {
  const a = server.address() as net.AddressInfo;
  process.stdout.write(`${JSON.stringify({ listener: name, address: `${a.address}:${a.port}` })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
