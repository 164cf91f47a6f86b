/**
 * The one way a protocol session is put on a WebSocket, accepting and dialing alike: every tunnel
 * connection (agentk to kas, kas to kas) gets the same socket settings, worked out once from the
 * session's limits:
 * - maxPayload a margin above maxFrameSize: an oversized frame still reaches the session, which
 *   closes with its coded FRAME_TOO_LARGE (4004) rather than the WebSocket layer's generic 1009,
 *   while that layer never keeps a message much larger than a frame (ws's default would take 100 MiB);
 * - permessage-deflate off (docs/protocol.md, "Transport");
 * - TCP noDelay: frames are whole messages already, Nagle would only delay them;
 * - the transport's high-water mark a fixed number of chunks;
 * - the raw socket handed to the transport, so one writer turn's frames go out in one write.
 * Accepted connections speak RFC 6455 on the socket themselves (SocketWsTransport); dialled ones
 * run on a `ws` WebSocket (WsTransport), which brings the client's handshake, proxies and TLS.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import type { MessageTransport } from '../protocol/transport.js';
import { DEFAULT_LIMITS, DEFAULT_TUNING, type SessionLimits, type SessionTuning } from '../protocol/limits.js';
import { SocketWsTransport } from './ws-socket-transport.js';
import { WsTransport } from './ws-transport.js';

/** The session options the socket settings follow: the same objects the Session is given. */
export interface TunnelSocketLimits {
  limits?: Partial<SessionLimits>;
  tuning?: Partial<SessionTuning>;
}

/** What the WebSocket layer is set to for a session with given limits. */
export interface TunnelSocketSettings {
  /** Largest WebSocket message accepted, bytes. */
  maxPayload: number;
  /** Queued bytes above which the transport reports backpressure. */
  highWater: number;
}

/** Bytes above maxFrameSize the WebSocket layer still accepts (see the file comment). */
const PAYLOAD_MARGIN = 64 * 1024;

/** The transport's high-water mark in chunks: enough queued to keep a fast link busy between writer turns. */
const HIGH_WATER_CHUNKS = 16;

export function tunnelSocketSettings(options: TunnelSocketLimits): TunnelSocketSettings {
  const maxFrameSize = options.limits?.maxFrameSize ?? DEFAULT_LIMITS.maxFrameSize;
  const chunkSize = options.tuning?.chunkSize ?? DEFAULT_TUNING.chunkSize;
  return { maxPayload: maxFrameSize + PAYLOAD_MARGIN, highWater: chunkSize * HIGH_WATER_CHUNKS };
}

function transportOn(ws: WebSocket, socket: Socket | undefined, highWater: number): WsTransport {
  socket?.setNoDelay(true);
  return new WsTransport(ws, socket ? { socket, highWater } : { highWater });
}

/** RFC 6455 1.3: appended to the client's key to make the Sec-WebSocket-Accept answer. */
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** A Sec-WebSocket-Key is 16 bytes in base64. */
const WS_KEY = /^[+/0-9A-Za-z]{22}==$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Why an upgrade request is not a WebSocket opening handshake this server completes (RFC 6455 4.2.1), or null. */
function handshakeRefusal(req: http.IncomingMessage): { status: number; message: string; header?: string } | null {
  if (req.method !== 'GET') return { status: 405, message: 'Invalid HTTP method' };
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return { status: 400, message: 'Invalid Upgrade header' };
  if (!WS_KEY.test(req.headers['sec-websocket-key'] ?? '')) return { status: 400, message: 'Missing or invalid Sec-WebSocket-Key header' };
  const version = req.headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') return { status: 400, message: 'Missing or invalid Sec-WebSocket-Version header', header: 'Sec-WebSocket-Version: 13, 8' };
  const protocols = req.headers['sec-websocket-protocol'];
  if (protocols !== undefined && !protocols.split(',').every((p) => TOKEN.test(p.trim()))) return { status: 400, message: 'Invalid Sec-WebSocket-Protocol header' };
  return null;
}

function refuseHandshake(socket: Duplex, refusal: { status: number; message: string; header?: string }): void {
  const lines = [`HTTP/1.1 ${refusal.status} ${http.STATUS_CODES[refusal.status] ?? ''}`, 'Connection: close', 'Content-Type: text/plain', `Content-Length: ${Buffer.byteLength(refusal.message)}`];
  if (refusal.header) lines.push(refusal.header);
  socket.end(`${lines.join('\r\n')}\r\n\r\n${refusal.message}`);
}

/**
 * Accepts tunnel WebSockets on a server's 'upgrade' event: the caller authenticates the upgrade
 * request first and calls `accept` only for one it admits. The opening handshake is answered here
 * and the connection runs on a SocketWsTransport (RFC 6455 on the socket, no `ws` object: see there
 * why). Keeps no list of clients; the caller owns every session it makes.
 */
export class TunnelWebSocketServer {
  private readonly settings: TunnelSocketSettings;

  constructor(options: TunnelSocketLimits) {
    this.settings = tunnelSocketSettings(options);
  }

  /**
   * Completes the WebSocket handshake on `socket` and hands over the transport to run a session on.
   * A request that is not a valid opening handshake is answered with 400 (405 for a method other
   * than GET) and `onAccepted` is not called. No extension is accepted (permessage-deflate stays
   * off); the first subprotocol offered, if any, is echoed.
   */
  accept(req: http.IncomingMessage, socket: Duplex, head: Buffer, onAccepted: (transport: MessageTransport) => void): void {
    const refusal = handshakeRefusal(req);
    if (refusal) {
      refuseHandshake(socket, refusal);
      return;
    }
    if (!socket.readable || !socket.writable) {
      socket.destroy();
      return;
    }
    const answer = createHash('sha1').update(`${req.headers['sec-websocket-key']!}${WS_GUID}`).digest('base64');
    const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${answer}`];
    const protocol = req.headers['sec-websocket-protocol']?.split(',')[0]?.trim();
    if (protocol) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    onAccepted(new SocketWsTransport(socket as Socket, head, this.settings));
  }
}

export interface TunnelDialOptions extends TunnelSocketLimits {
  /** Headers of the upgrade request (credentials among them). */
  headers: Record<string, string>;
  /** PEM CA certificates to trust for wss:// instead of the system roots. */
  ca?: string | Buffer;
  handshakeTimeoutMs: number;
  /** The error a refusal of the upgrade (an HTTP status instead of 101) rejects with. */
  /** The error for an upgrade answered with an HTTP status; `bodyStart` is the answer's first bytes (at most 256). */
  refused: (status: number, bodyStart: string) => Error;
  /** Receives the WebSocket at once, so a caller can terminate a dial in progress (shutdown). */
  onConnecting?: (ws: WebSocket) => void;
}

/** An open tunnel WebSocket and the transport to run a session on. */
export interface TunnelConnection {
  ws: WebSocket;
  transport: WsTransport;
}

/**
 * Dials a tunnel WebSocket. Resolves once it is open; rejects with `refused(status)` when the
 * server answers the upgrade with a status, or with the connection's error. Redirects are not
 * followed: credentials go to the configured address only.
 */
export function dialTunnelWebSocket(url: string | URL, options: TunnelDialOptions): Promise<TunnelConnection> {
  const { maxPayload, highWater } = tunnelSocketSettings(options);
  const ws = new WebSocket(url, {
    headers: options.headers,
    perMessageDeflate: false,
    maxPayload,
    handshakeTimeout: options.handshakeTimeoutMs,
    followRedirects: false,
    ...(options.ca ? { ca: options.ca } : {}),
  });
  options.onConnecting?.(ws);
  return new Promise<TunnelConnection>((resolve, reject) => {
    let socket: Socket | undefined;
    let refused: Error | null = null;
    ws.once('upgrade', (res) => {
      socket = res.socket as Socket;
    });
    ws.once('unexpected-response', (_req, res) => {
      // The first bytes of the answer tell what answered (a refusal of kas, an HTTPS port's "plain
      // HTTP" answer): read at most 256 of them, for at most a second.
      const chunks: Buffer[] = [];
      let size = 0;
      let decided = false;
      const decide = () => {
        if (decided) return;
        decided = true;
        clearTimeout(timer);
        refused = options.refused(res.statusCode ?? 0, Buffer.concat(chunks).subarray(0, 256).toString('utf8'));
        ws.terminate();
      };
      const timer = setTimeout(decide, 1000);
      res.on('data', (chunk: Buffer) => {
        if (size < 256) chunks.push(chunk);
        size += chunk.length;
        if (size >= 256) decide();
      });
      res.once('end', decide);
      res.once('error', decide);
      res.once('close', decide);
    });
    const onError = (err: Error) => {
      ws.off('open', onOpen);
      reject(refused ?? err);
    };
    const onOpen = () => resolve({ ws, transport: transportOn(ws, socket, highWater) });
    // Stays attached: a later error must never be unhandled (the transport adds its own listener too).
    ws.on('error', onError);
    ws.once('open', onOpen);
  });
}
