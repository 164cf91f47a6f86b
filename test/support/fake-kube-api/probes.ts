/**
 * Routes of the fake Kubernetes API server that no real API server has: they exist so that proxy
 * tests can provoke what a real one does only now and then (a body echoed with repeated headers, a
 * watch held open until the test says so, a response that fails after its head or never ends, an
 * upgraded connection where either side ends first).
 *
 * Plain requests (paths after the server's prefix):
 * - `/echo`: 200 with the request body, `X-Multi: one` and `X-Multi: two`, `X-Seen-Sha256`.
 * - `/stream`: a first watch line, then the second once the test calls `release('stream')`.
 * - `/slow`: the head at once, the body `done` once the test calls `release('slow')`.
 * - `/die`: the head and `partial`, then the connection drops.
 * - `/hang`: the head and `partial`, then nothing; `hangAborted` resolves when the client gives up.
 * - `/early-hints`: a 103 Early Hints (`Link`), then 200 `final`.
 *
 * Upgrades (any Upgrade header is accepted and echoed back in the 101):
 * - `/exec/client-first`: echoes raw bytes; after the client's end, says `bye` and ends.
 * - `/exec/server-first`: sends `hello-and-goodbye` and ends first; `serverFirstReceived` resolves with
 *   what the client sent after that.
 * - any other `/exec/...`: a 403 Status, as an API server answers an upgrade it refuses.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';

/** What the probe routes tell the test. */
export class Probes {
  /** Resolves when a `/hang` response was closed before it completed (the client aborted it). */
  readonly hangAborted: Promise<void>;
  /** Resolves with what a `/exec/server-first` upgrade received from the client after its own end. */
  readonly serverFirstReceived: Promise<string>;
  private readonly gates = new Map<string, { open: Promise<void>; release: () => void }>();
  private onHangAborted!: () => void;
  private onServerFirst!: (received: string) => void;

  constructor() {
    this.hangAborted = new Promise((resolve) => (this.onHangAborted = resolve));
    this.serverFirstReceived = new Promise((resolve) => (this.onServerFirst = resolve));
  }

  /** Lets a request waiting at gate `name` (`stream`, `slow`) go on; a later request passes at once. */
  release(name: string): void {
    this.gate(name).release();
  }

  private gate(name: string): { open: Promise<void>; release: () => void } {
    let gate = this.gates.get(name);
    if (!gate) {
      let release!: () => void;
      const open = new Promise<void>((resolve) => (release = resolve));
      gate = { open, release };
      this.gates.set(name, gate);
    }
    return gate;
  }

  /** Answers a plain request if `path` is a probe route; false when it is not one. */
  serve(path: string, req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, bodySha256: string): boolean {
    switch (path) {
      case '/echo':
        // Repeated headers need the raw array form of writeHead.
        res.writeHead(200, [
          ['Content-Type', 'application/octet-stream'],
          ['X-Multi', 'one'],
          ['X-Multi', 'two'],
          ['X-Seen-Sha256', bodySha256],
          ['Content-Length', String(body.length)],
        ] as unknown as http.OutgoingHttpHeaders);
        res.end(req.method === 'HEAD' ? undefined : body);
        return true;
      case '/stream':
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.write('{"type":"ADDED"}\n');
        void this.gate('stream').open.then(() => res.end('{"type":"MODIFIED"}\n'));
        return true;
      case '/slow':
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.flushHeaders();
        void this.gate('slow').open.then(() => res.end('done'));
        return true;
      case '/die':
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.write('partial', () => res.socket?.destroy());
        return true;
      case '/early-hints':
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' }, () => {
          res.writeHead(200, { 'Content-Type': 'text/plain' });
          res.end('final');
        });
        return true;
      case '/hang':
        res.on('close', () => {
          if (!res.writableEnded) this.onHangAborted();
        });
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.write('partial');
        return true;
      default:
        return false;
    }
  }

  /** Takes an upgrade if `path` is under `/exec/` (and not a pod's exec); false when it is not one. */
  upgrade(path: string, req: http.IncomingMessage, socket: Duplex): boolean {
    if (!path.startsWith('/exec/')) return false;
    const switching = `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${req.headers.upgrade}\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`;
    if (path === '/exec/client-first') {
      socket.write(switching);
      socket.on('data', (d: Buffer) => socket.write(d));
      socket.on('end', () => socket.end('bye'));
    } else if (path === '/exec/server-first') {
      socket.write(switching);
      socket.end('hello-and-goodbye');
      const got: Buffer[] = [];
      socket.on('data', (d: Buffer) => got.push(d));
      socket.on('end', () => this.onServerFirst(Buffer.concat(got).toString()));
    } else {
      const body = '{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}';
      socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    }
    return true;
  }
}
