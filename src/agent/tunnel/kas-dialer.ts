/**
 * Opens one WebSocket to kas: the agent token as a bearer token, the socket settings every tunnel
 * connection gets (src/shared/tunnel-websocket.ts). Resolves once the connection is open; a refusal
 * of the upgrade (401, 403, any other status) rejects with KasRefusedError carrying the status.
 */
import type { WebSocket } from 'ws';
import type { HeaderPair } from '../../protocol/http.js';
import { ProgramError } from '../../shared/errors.js';
import { dialTunnelWebSocket, type TunnelConnection, type TunnelSocketLimits } from '../../shared/tunnel-websocket.js';

export interface KasDialOptions extends TunnelSocketLimits {
  url: URL;
  token: string;
  /** Extra headers for the upgrade request (--kas-header); a repeated name is sent comma-joined. */
  headers: readonly HeaderPair[];
  /** PEM CA certificates to trust for wss:// instead of the system roots. */
  ca?: string | Buffer;
  handshakeTimeoutMs: number;
}

/** The open WebSocket to kas and the transport to run the session on. */
export type KasConnection = TunnelConnection;

/** kas answered the upgrade request with an HTTP status instead of switching protocols. */
export class KasRefusedError extends ProgramError {
  declare readonly code: 'KAS_REFUSED';
  readonly status: number;
  /** The answer's Content-Type: tells kas's own refusals (text) from a Kubernetes API's (JSON Status). */
  readonly contentType: string | undefined;
  /** The answer's first bytes (at most 256), for telling what answered. */
  readonly bodyStart: string;

  constructor(status: number, contentType?: string, bodyStart = '') {
    super('KAS_REFUSED', status === 401 || status === 403 ? `kas refused the agent token (HTTP ${status})` : `kas answered the WebSocket upgrade with HTTP ${status}`);
    this.name = 'KasRefusedError';
    this.status = status;
    this.contentType = contentType;
    this.bodyStart = bodyStart;
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
  let contentType: string | undefined;
  return dialTunnelWebSocket(options.url, {
    headers,
    ca: options.ca,
    handshakeTimeoutMs: options.handshakeTimeoutMs,
    limits: options.limits,
    tuning: options.tuning,
    refused: (status, bodyStart) => new KasRefusedError(status, contentType, bodyStart),
    onConnecting: (ws) => {
      // Runs before the listener that makes the refusal (registered after onConnecting is called).
      ws.once('unexpected-response', (_req, res) => (contentType = res.headers['content-type']));
      onConnecting?.(ws);
    },
  });
}
