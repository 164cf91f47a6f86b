/**
 * A stand-in for the Kubernetes API server in agentk's tests: HTTPS (or HTTP) on loopback, served
 * under a base path prefix, with a few routes whose behaviour the proxy tests need (echo, streamed
 * chunks held back until the test releases them, a response that never ends, upgrades that echo raw
 * bytes). It records every request it sees. `writeKubeconfig` makes a kubeconfig pointing at it.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { CertificatePair } from '../../shared/tls-cert.js';

export interface SeenRequest {
  method: string;
  /** The request target as it arrived, prefix included. */
  url: string;
  rawHeaders: string[];
  bodyLength: number;
  bodySha256: string;
}

export const FAKE_KUBERNETES_VERSION = 'v1.30.0-fake';

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export class FakeApiServer {
  readonly seen: SeenRequest[] = [];
  readonly url: string;
  /** Resolves when a /hang response was closed before it completed (the agent aborted it). */
  readonly hangAborted: Promise<void>;
  /** Resolves with what a server-first upgrade received from the client after its own end. */
  readonly serverFirstReceived: Promise<string>;
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket | Duplex>();
  private readonly gates = new Map<string, () => void>();
  private readonly gateWaits = new Map<string, Promise<void>>();
  private onHangAborted!: () => void;
  private onServerFirst!: (s: string) => void;

  private constructor(server: http.Server, url: string) {
    this.server = server;
    this.url = url;
    this.hangAborted = new Promise((r) => (this.onHangAborted = r));
    this.serverFirstReceived = new Promise((r) => (this.onServerFirst = r));
  }

  static async start(options: { tls?: CertificatePair; prefix?: string } = {}): Promise<FakeApiServer> {
    const server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }) : http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const prefix = options.prefix ?? '';
    const api = new FakeApiServer(server, `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}${prefix}`);
    server.on('connection', (s: Socket) => {
      api.sockets.add(s);
      s.on('close', () => api.sockets.delete(s));
    });
    server.on('secureConnection', (s: Socket) => {
      api.sockets.add(s);
      s.on('close', () => api.sockets.delete(s));
    });
    server.on('request', (req, res) => api.serve(req, res, prefix));
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => api.upgrade(req, socket, head, prefix));
    return api;
  }

  /** Lets a request waiting at gate `name` (/stream, /slow) go on. */
  release(name: string): void {
    this.gate(name);
    this.gates.get(name)!();
  }

  private gate(name: string): Promise<void> {
    if (!this.gateWaits.has(name)) this.gateWaits.set(name, new Promise<void>((r) => this.gates.set(name, r)));
    return this.gateWaits.get(name)!;
  }

  /** Seen requests whose path (after the prefix) starts with `path`. */
  seenAt(path: string): SeenRequest[] {
    const prefix = new URL(this.url).pathname.replace(/\/$/, '');
    return this.seen.filter((s) => s.url.startsWith(prefix + path));
  }

  private record(req: http.IncomingMessage, body: Buffer): SeenRequest {
    const seen = { method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, bodyLength: body.length, bodySha256: sha256(body) };
    this.seen.push(seen);
    return seen;
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse, prefix: string): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const seen = this.record(req, body);
      const url = req.url ?? '';
      if (!url.startsWith(`${prefix}/`)) {
        res.writeHead(404).end(`not under the prefix ${prefix}`);
        return;
      }
      const path = url.slice(prefix.length).split('?', 1)[0]!;
      this.route(path, req, res, body, seen).catch((err: unknown) => res.destroy(err as Error));
    });
  }

  private async route(path: string, req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, seen: SeenRequest): Promise<void> {
    switch (path) {
      case '/version':
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ major: '1', minor: '30', gitVersion: FAKE_KUBERNETES_VERSION }));
        return;
      case '/echo':
        // Echoes the body; repeated headers and the request's facts in headers.
        res.writeHead(200, [
          ['Content-Type', 'application/octet-stream'],
          ['X-Multi', 'one'],
          ['X-Multi', 'two'],
          ['X-Seen-Sha256', seen.bodySha256],
          ['Content-Length', String(body.length)],
        ] as unknown as http.OutgoingHttpHeaders);
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      case '/stream':
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.write('{"type":"ADDED"}\n');
        await this.gate('stream');
        res.end('{"type":"MODIFIED"}\n');
        return;
      case '/slow':
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.flushHeaders();
        await this.gate('slow');
        res.end('done');
        return;
      case '/die':
        // Fails after the head: the connection drops mid-body.
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.write('partial', () => res.socket?.destroy());
        return;
      case '/hang':
        res.on('close', () => {
          if (!res.writableEnded) this.onHangAborted();
        });
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.write('partial');
        return;
      default:
        res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"kind":"Status","code":404}');
    }
  }

  private upgrade(req: http.IncomingMessage, socket: Duplex, _head: Buffer, prefix: string): void {
    this.record(req, Buffer.alloc(0));
    const path = (req.url ?? '').slice(prefix.length).split('?', 1)[0];
    const switching = `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${req.headers.upgrade}\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`;
    if (path === '/exec/client-first') {
      // Echoes raw bytes; after the client's end, says bye and ends.
      socket.write(switching);
      socket.on('data', (d: Buffer) => socket.write(d));
      socket.on('end', () => socket.end('bye'));
    } else if (path === '/exec/server-first') {
      // Ends its side first; keeps reading what the client sends after that.
      socket.write(switching);
      socket.end('hello-and-goodbye');
      const got: Buffer[] = [];
      socket.on('data', (d: Buffer) => got.push(d));
      socket.on('end', () => this.onServerFirst(Buffer.concat(got).toString()));
    } else {
      const body = '{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}';
      socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    }
  }

  /** A kubeconfig whose context `fake` points here with a bearer token; its current context points elsewhere. */
  writeKubeconfig(dir: string, token: string, ca?: string): string {
    return writeKubeconfig(dir, this.url, token, ca);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** A header's values in raw header pairs, case-insensitively. */
export function rawHeaderValues(rawHeaders: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === name.toLowerCase()) out.push(rawHeaders[i + 1]!);
  return out;
}

/** A kubeconfig whose context `fake` points at `server` with a bearer token; its current context points elsewhere. */
export function writeKubeconfig(dir: string, server: string, token: string, ca?: string): string {
  const file = join(dir, 'kubeconfig');
  const caLine = ca ? `    certificate-authority-data: ${Buffer.from(ca).toString('base64')}\n` : '';
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: ${server}
${caLine}- name: elsewhere
  cluster:
    server: https://192.0.2.1:6443
users:
- name: agent
  user:
    token: ${token}
- name: nobody
  user: {}
contexts:
- name: fake
  context: {cluster: fake, user: agent}
- name: other
  context: {cluster: elsewhere, user: nobody}
current-context: other
`,
  );
  return file;
}
