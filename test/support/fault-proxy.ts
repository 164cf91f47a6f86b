/**
 * A TCP proxy that misbehaves on request, for fault-injection tests: put it between agentk and kas
 * (agentk dials the proxy; the proxy dials kas) and change what it does to the bytes at any time.
 *
 * Modes, per connection:
 * - `pass`: forward both ways;
 * - `delay`: forward both ways after `delayMs` (order kept);
 * - `stall`: forward nothing, silently, keeping both sockets open (a NAT that forgot the flow, a
 *   dead ingress);
 * - `half-open`: drop one direction (`drop`: the bytes towards kas, or towards the agent), pass the other;
 * - `corrupt`: flip one bit in every chunk (both directions), then forward.
 * `cut()` destroys both sockets of every connection (a reset). A fault applies to the connections
 * open at that moment; new connections get `newConnectionMode` (default `pass`), so "the network
 * came back" is just a new connection.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { listenLoopback } from './ports.js';

export type FaultMode = 'pass' | 'delay' | 'stall' | 'half-open' | 'corrupt';
export type Direction = 'to-server' | 'to-client';

export interface FaultSettings {
  mode: FaultMode;
  delayMs?: number;
  /** With `half-open`: the direction whose bytes are dropped. */
  drop?: Direction;
}

interface Pair {
  client: net.Socket;
  server: net.Socket;
  settings: FaultSettings;
}

export class FaultProxy {
  readonly address: string;
  /** Connections accepted so far. */
  accepted = 0;
  newConnectionMode: FaultSettings = { mode: 'pass' };
  private readonly server: net.Server;
  private readonly pairs = new Set<Pair>();

  private constructor(server: net.Server) {
    this.server = server;
    this.address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Listens on 127.0.0.1 port 0 and forwards to `target` (`host:port`). */
  static async start(target: string): Promise<FaultProxy> {
    const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
    const holder: { proxy: FaultProxy | null } = { proxy: null };
    const server = net.createServer((client) => holder.proxy!.onConnection(client, host, port));
    await listenLoopback(server);
    holder.proxy = new FaultProxy(server);
    return holder.proxy;
  }

  /** Connections with both sockets still open. */
  get connections(): number {
    return this.pairs.size;
  }

  private onConnection(client: net.Socket, host: string, port: number): void {
    this.accepted++;
    const server = net.connect(port, host);
    const pair: Pair = { client, server, settings: { ...this.newConnectionMode } };
    this.pairs.add(pair);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    for (const s of [client, server]) {
      s.on('error', end);
      s.on('close', end);
    }
    this.forward(pair, client, server, 'to-server');
    this.forward(pair, server, client, 'to-client');
  }

  private forward(pair: Pair, from: net.Socket, to: net.Socket, direction: Direction): void {
    // One FIFO per direction: bytes delayed earlier go out before anything sent later, also after
    // the mode changed (separate timers could fire out of order and corrupt the TLS stream).
    const queue: Array<{ due: number; chunk: Buffer | null }> = [];
    let timer: NodeJS.Timeout | null = null;
    const pump = () => {
      timer = null;
      const now = Date.now();
      while (queue.length > 0 && queue[0]!.due <= now) {
        const { chunk } = queue.shift()!;
        if (to.destroyed) continue;
        if (chunk) to.write(chunk);
        else to.end();
      }
      if (queue.length > 0) timer = setTimeout(pump, queue[0]!.due - now);
    };
    const write = (chunk: Buffer | null, delayMs: number) => {
      queue.push({ due: Date.now() + delayMs, chunk });
      if (queue.length === 1 && delayMs === 0) pump();
      else if (!timer) timer = setTimeout(pump, Math.max(0, queue[0]!.due - Date.now()));
    };
    from.on('data', (chunk: Buffer) => {
      const { mode, delayMs = 0, drop } = pair.settings;
      switch (mode) {
        case 'pass':
          return write(chunk, 0);
        case 'delay':
          return write(chunk, delayMs);
        case 'stall':
          return;
        case 'half-open':
          if (direction !== drop) write(chunk, 0);
          return;
        case 'corrupt': {
          const bad = Buffer.from(chunk);
          const i = Math.floor(bad.length / 2);
          bad[i] = bad[i]! ^ 0x40;
          return write(bad, 0);
        }
      }
    });
    from.on('end', () => {
      if (pair.settings.mode === 'pass' || pair.settings.mode === 'delay') write(null, 0);
    });
  }

  /** Applies a fault to every connection open now. */
  fault(settings: FaultSettings): void {
    for (const p of this.pairs) p.settings = { ...settings };
  }

  /** Destroys both sockets of every connection open now. */
  cut(): void {
    for (const p of [...this.pairs]) {
      p.client.destroy();
      p.server.destroy();
    }
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
