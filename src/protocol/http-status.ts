/**
 * The HTTP status kas answers a Kubernetes API client with when the client's request failed in the
 * tunnel before its response head, by tunnel error code: one table instead of statuses chosen at
 * each call site. docs/errors.md describes it. Failures that are not tunnel codes (the agent is not
 * connected, the client went away) keep their own statuses at the call site.
 */
import type { TunnelErrorCode } from './errors.js';

/** The two moments a proxied request can fail in the tunnel before it has a response head. */
export type TunnelFailureStage = 'open' | 'reply';

/** Status for each stage: `open` when openStream threw, `reply` when the opened stream failed before its REPLY. */
export type TunnelHttpStatus = Readonly<Record<TunnelFailureStage, number>>;

// Opening: the stream never reached the agent. A full stream table is the client's concurrency
// (429, retry later); a head over the agent's announced limit is the client's headers (431, no
// session will take it); anything else means no session can take the stream (503).
// Replying: the agent had the request; whatever went wrong, the gateway's answer is 502.

export const TUNNEL_CODE_HTTP_STATUS: Readonly<Record<TunnelErrorCode, TunnelHttpStatus>> = {
  PROTOCOL_ERROR: { open: 503, reply: 502 },
  UNSUPPORTED_VERSION: { open: 503, reply: 502 },
  HANDSHAKE_TIMEOUT: { open: 503, reply: 502 },
  FRAME_TOO_LARGE: { open: 503, reply: 502 },
  MALFORMED_FRAME: { open: 503, reply: 502 },
  UNKNOWN_FRAME_KIND: { open: 503, reply: 502 },
  FLOW_CONTROL: { open: 503, reply: 502 },
  STREAM_LIMIT: { open: 429, reply: 502 },
  HEADER_TOO_LARGE: { open: 431, reply: 502 },
  BUFFER_LIMIT: { open: 503, reply: 502 },
  CANCELLED: { open: 503, reply: 502 },
  KEEPALIVE_TIMEOUT: { open: 503, reply: 502 },
  SESSION_CLOSED: { open: 503, reply: 502 },
  CONNECTION_LOST: { open: 503, reply: 502 },
  GOING_AWAY: { open: 503, reply: 502 },
  STREAM_REFUSED: { open: 503, reply: 502 },
  INTERNAL: { open: 503, reply: 502 },
  STREAM_CLOSED: { open: 503, reply: 502 },
  UPSTREAM_ERROR: { open: 503, reply: 502 },
  AUTH_REVOKED: { open: 503, reply: 502 },
  UNKNOWN_ERROR: { open: 503, reply: 502 },
};

/** The status for a request whose stream failed with `code` at `stage`. */
export function httpStatusOfTunnelCode(code: TunnelErrorCode, stage: TunnelFailureStage): number {
  return TUNNEL_CODE_HTTP_STATUS[code][stage];
}

/**
 * Failures to open a stream that another session of the agent may not have: the session is closed,
 * draining or refusing. Only these are retried on another session; any other failure (a head too
 * large, a full stream table, a bug) would fail the same way everywhere and is answered at once.
 */
const OPENS_ELSEWHERE: ReadonlySet<TunnelErrorCode> = new Set<TunnelErrorCode>(['STREAM_REFUSED', 'SESSION_CLOSED', 'GOING_AWAY', 'CONNECTION_LOST']);

/** True when a stream that failed to open with `code` may open on another session. */
export function opensElsewhere(code: TunnelErrorCode): boolean {
  return OPENS_ELSEWHERE.has(code);
}
