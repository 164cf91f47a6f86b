/**
 * Opens one WebSocket to kas: the agent token as a bearer token, no compression, a message size
 * cap just above the session's frame limit. Resolves once the connection is open; a refusal of the
 * upgrade (401, 403, any other status) rejects with KasRefusedError carrying the status.
 */
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import type { HeaderPair } from '../../protocol/http.js';
import { ProgramError } from '../../shared/errors.js';

export interface KasDialOptions {
  url: URL;
  token: string;
  /** Extra headers for the upgrade request (--kas-header); a repeated name is sent comma-joined. */
  headers: readonly HeaderPair[];
  /** PEM CA certificates to trust for wss:// instead of the system roots. */
  ca?: string | Buffer;
  maxPayload: number;
  handshakeTimeoutMs: number;
}

export interface KasConnection {
  ws: WebSocket;
  /** The TCP or TLS socket under the WebSocket, for corking writes. */
  socket: Socket | undefined;
}

/** kas answered the upgrade request with an HTTP status instead of switching protocols. */
export class KasRefusedError extends ProgramError {
  declare readonly code: 'KAS_REFUSED';
  readonly status: number;

  constructor(status: number) {
    super('KAS_REFUSED', status === 401 || status === 403 ? `kas refused the agent token (HTTP ${status})` : `kas answered the WebSocket upgrade with HTTP ${status}`);
    this.name = 'KasRefusedError';
    this.status = status;
  }

  get unauthorized(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

/**
 * Dials kas. `onConnecting` receives the WebSocket at once so a caller can terminate it (shutdown);
 * a terminated dial rejects.
 */
export function dialKas(options: KasDialOptions, onConnecting?: (ws: WebSocket) => void): Promise<KasConnection> {
  const headers: Record<string, string> = {};
  for (const [name, value] of options.headers) headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  headers.Authorization = `Bearer ${options.token}`;
  const ws = new WebSocket(options.url, {
    headers,
    perMessageDeflate: false,
    maxPayload: options.maxPayload,
    handshakeTimeout: options.handshakeTimeoutMs,
    followRedirects: false,
    ...(options.ca ? { ca: options.ca } : {}),
  });
  onConnecting?.(ws);
  return new Promise<KasConnection>((resolve, reject) => {
    let socket: Socket | undefined;
    let refused: KasRefusedError | null = null;
    ws.once('upgrade', (res) => {
      socket = res.socket as Socket;
    });
    ws.once('unexpected-response', (_req, res) => {
      refused = new KasRefusedError(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    const onError = (err: Error) => {
      ws.off('open', onOpen);
      reject(refused ?? err);
    };
    const onOpen = () => resolve({ ws, socket });
    // Stays attached: a later error must never be unhandled (the transport adds its own listener too).
    ws.on('error', onError);
    ws.once('open', onOpen);
  });
}
