/**
 * The one way a protocol session is put on a WebSocket, accepting and dialing alike: every tunnel
 * connection (agentk to kas, kas to kas) gets the same socket settings, worked out once from the
 * session's limits:
 * - maxPayload a margin above maxFrameSize: an oversized frame still reaches the session, which
 *   closes with its coded FRAME_TOO_LARGE (4004) rather than ws's generic 1009, while ws never
 *   buffers a message much larger than a frame (its default would take 100 MiB);
 * - permessage-deflate off (docs/protocol.md, "Transport");
 * - TCP noDelay: frames are whole messages already, Nagle would only delay them;
 * - the transport's high-water mark a fixed number of chunks;
 * - the raw socket handed to the transport, so one writer turn's frames go out in one write.
 */
import type http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { DEFAULT_LIMITS, DEFAULT_TUNING, type SessionLimits, type SessionTuning } from '../protocol/limits.js';
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

/**
 * Accepts tunnel WebSockets on a server's 'upgrade' event (noServer mode): the caller
 * authenticates the upgrade request first and calls `accept` only for one it admits. Keeps no
 * list of clients; the caller owns every session it makes.
 */
export class TunnelWebSocketServer {
  private readonly wss: WebSocketServer;
  private readonly highWater: number;

  constructor(options: TunnelSocketLimits) {
    const settings = tunnelSocketSettings(options);
    this.highWater = settings.highWater;
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false, maxPayload: settings.maxPayload });
  }

  /**
   * Completes the WebSocket handshake on `socket` and hands over the transport to run a session on.
   * An invalid WebSocket request is answered by ws itself (400) and `onAccepted` is not called.
   */
  accept(req: http.IncomingMessage, socket: Duplex, head: Buffer, onAccepted: (transport: WsTransport) => void): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => onAccepted(transportOn(ws, socket as Socket, this.highWater)));
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
