/**
 * Every error the tunnel produces, in one place. Callers branch on `code` (a stable string), never on
 * the message. Codes that cross the wire (in RESET frames and session close codes) also have a stable
 * number, `wire`. docs/errors.md lists every code; a test keeps the two in step.
 */

export interface ErrorCodeInfo {
  /** Number carried in RESET frames; session close codes are 4000 + this number. */
  readonly wire: number;
  /** What it means, for docs/errors.md and for people reading logs. */
  readonly description: string;
}

export const TUNNEL_ERROR_CODES = {
  PROTOCOL_ERROR: { wire: 1, description: 'The peer broke the protocol: a frame that may not come in this state, an id of the wrong parity, a field of the wrong type.' },
  UNSUPPORTED_VERSION: { wire: 2, description: 'The handshake named a protocol version this side does not speak.' },
  HANDSHAKE_TIMEOUT: { wire: 3, description: 'No complete handshake arrived within the deadline.' },
  FRAME_TOO_LARGE: { wire: 4, description: 'A frame was larger than the receiver\'s maximum frame size.' },
  MALFORMED_FRAME: { wire: 5, description: 'A frame could not be decoded as a msgpack envelope of a known shape.' },
  UNKNOWN_FRAME_KIND: { wire: 6, description: 'A frame carried a kind number this side does not know.' },
  FLOW_CONTROL: { wire: 7, description: 'The peer sent more data on a stream than the receiver granted.' },
  STREAM_LIMIT: { wire: 8, description: 'Opening the stream would exceed the maximum number of concurrent streams or pending opens.' },
  HEADER_TOO_LARGE: { wire: 9, description: 'A stream head (OPEN or REPLY) was larger than the maximum header size.' },
  BUFFER_LIMIT: { wire: 10, description: 'Receiving the data would exceed the bytes buffered per session or per process.' },
  CANCELLED: { wire: 11, description: 'The stream was aborted by its user (for example the HTTP client went away).' },
  KEEPALIVE_TIMEOUT: { wire: 12, description: 'The peer did not answer a ping within the deadline: the connection is presumed dead.' },
  SESSION_CLOSED: { wire: 13, description: 'The session was closed by this side; open streams fail with this code.' },
  CONNECTION_LOST: { wire: 14, description: 'The underlying connection closed or failed; open streams fail with this code.' },
  GOING_AWAY: { wire: 15, description: 'The session drained and its grace period ended before the stream finished.' },
  STREAM_REFUSED: { wire: 16, description: 'The stream was not processed (opened after a drain began); it is safe to retry elsewhere.' },
  INTERNAL: { wire: 17, description: 'An unexpected failure inside this process.' },
  STREAM_CLOSED: { wire: 18, description: 'A frame arrived for a direction of a stream that had already ended.' },
  UPSTREAM_ERROR: { wire: 19, description: 'The far side could not complete the request to its upstream (connection refused, reset, TLS failure).' },
  AUTH_REVOKED: { wire: 20, description: 'The agent\'s credentials are no longer valid; the session is closed.' },
  UNKNOWN_ERROR: { wire: 0, description: 'A RESET or close carried a number this side does not know.' },
} as const satisfies Record<string, ErrorCodeInfo>;

export type TunnelErrorCode = keyof typeof TUNNEL_ERROR_CODES;

const byWire = new Map<number, TunnelErrorCode>(
  (Object.keys(TUNNEL_ERROR_CODES) as TunnelErrorCode[]).map((code) => [TUNNEL_ERROR_CODES[code].wire, code]),
);

/** Base of the session close codes sent on the WebSocket (the application range 4000-4999). */
export const CLOSE_CODE_BASE = 4000;
/** A clean close: the session ended without error. */
export const CLOSE_NORMAL = 1000;

export function codeFromWire(wire: number): TunnelErrorCode {
  return byWire.get(wire) ?? 'UNKNOWN_ERROR';
}

export function wireOf(code: TunnelErrorCode): number {
  return TUNNEL_ERROR_CODES[code].wire;
}

/** Maps a transport close code back to a tunnel code (1000 and other non-application codes map to CONNECTION_LOST). */
export function codeFromCloseCode(closeCode: number): TunnelErrorCode {
  if (closeCode >= CLOSE_CODE_BASE && closeCode < CLOSE_CODE_BASE + 1000) return codeFromWire(closeCode - CLOSE_CODE_BASE);
  return 'CONNECTION_LOST';
}

/** The one error class of the tunnel. `remote` is true when the code came from the peer. */
export class TunnelError extends Error {
  readonly code: TunnelErrorCode;
  readonly remote: boolean;

  constructor(code: TunnelErrorCode, message: string, options?: { cause?: unknown; remote?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TunnelError';
    this.code = code;
    this.remote = options?.remote ?? false;
  }

  get wire(): number {
    return wireOf(this.code);
  }
}

export function isTunnelError(err: unknown): err is TunnelError {
  return err instanceof TunnelError;
}
