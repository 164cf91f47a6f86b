/**
 * Reading and writing streams in tests: tunnel streams (`TunnelStream`), HTTP responses and any
 * other Node stream. Kept here so that every test reads a body, waits for an error or writes with
 * backpressure the same way.
 */
import { once } from 'node:events';
import net from 'node:net';
import type { TunnelError } from '../../src/protocol/errors.js';
import type { TunnelStream } from '../../src/protocol/stream.js';

/**
 * Reads a stream to its end: a tunnel stream's data, an HTTP response's body. Rejects when the
 * stream fails, or, for an HTTP response, when its connection closes before the body is complete.
 * (Not `for await`: the async iterator destroys a Duplex when the readable side ends, which would
 * abort the writable side of a tunnel stream.)
 */
export function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
    // Only an http.IncomingMessage emits this; some failures of the peer surface only here.
    stream.once('aborted', () => reject(new Error('response aborted')));
  });
}

/** Waits for a tunnel stream to fail and returns its error; rejects if it closes without one. */
export function errorOf(stream: TunnelStream): Promise<TunnelError> {
  return new Promise((resolve, reject) => {
    stream.once('error', (err) => resolve(err as TunnelError));
    stream.once('close', () => setImmediate(() => reject(new Error(`stream ${stream.id} closed without an error`))));
  });
}

/** Writes a buffer in pieces, honouring backpressure, then ends the stream. */
export async function writeAll(stream: TunnelStream, data: Buffer, piece = 100_000): Promise<void> {
  for (let off = 0; off < data.length; off += piece) {
    if (!stream.write(data.subarray(off, off + piece))) await once(stream, 'drain');
  }
  stream.end();
}

/** The text a stream has delivered so far, for tests that act on a part of it before the end. */
export interface TextCollector {
  /** Everything received so far, as UTF-8. */
  readonly text: string;
  /** Resolves once the text received includes `want`. */
  until(want: string): Promise<void>;
}

/** Starts collecting a stream's data as text (a watch, an exec session) without waiting for its end. */
export function collectText(stream: NodeJS.ReadableStream): TextCollector {
  let text = '';
  const waiters: Array<{ want: string; resolve: () => void }> = [];
  stream.on('data', (d: Buffer) => {
    text += d.toString();
    for (const w of waiters.splice(0)) {
      if (text.includes(w.want)) w.resolve();
      else waiters.push(w);
    }
  });
  return {
    get text() {
      return text;
    },
    until(want: string): Promise<void> {
      if (text.includes(want)) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ want, resolve }));
    },
  };
}

/**
 * Sends `payload` to an echo server on a loopback port (a port-forward's local end) and resolves with
 * what came back once as many bytes as were sent have arrived; fails after `timeoutMs` without them.
 */
export function echoThroughPort(port: number, payload: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let received = 0;
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      received += d.length;
      if (received >= payload.length) socket.end();
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no echo after ${timeoutMs} ms (got ${received} of ${payload.length} bytes)`)));
  });
}
