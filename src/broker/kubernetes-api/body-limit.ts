/**
 * agent.kubernetes_api.max_request_body_size: a body whose Content-Length is above the limit is
 * refused before anything is opened; a body without one (chunked) is counted as it streams to the
 * agent and stopped when it passes the limit. Upgrades are not bodies and never come here.
 */
import type http from 'node:http';
import type { TunnelStream } from '../../protocol/stream.js';

/**
 * True when the request declares a body larger than `limit` (Content-Length, not chunked), given
 * its Transfer-Encoding and Content-Length values (undefined when absent).
 */
export function declaresBodyOver(transferEncoding: string | undefined, contentLength: string | undefined, limit: number): boolean {
  // With Transfer-Encoding the Content-Length is void (RFC 9112 6.3): such a body is counted instead.
  if (transferEncoding !== undefined) return false;
  return contentLength !== undefined && Number(contentLength) > limit;
}

/**
 * Pipes the request body into the stream, counting it. When it passes `limit`, the body stops
 * flowing, the stream is reset (CANCELLED: agentk aborts the API server's request) and `onOver`
 * runs, which answers the client. The rest of the body is never read: the answer closes the
 * connection.
 */
export function pipeBodyWithin(req: http.IncomingMessage, stream: TunnelStream, limit: number, onOver: () => void): void {
  let received = 0;
  const count = (chunk: Buffer): void => {
    received += chunk.length;
    if (received <= limit) return;
    req.off('data', count);
    req.unpipe(stream);
    req.pause();
    stream.reset('CANCELLED', `request body exceeds max_request_body_size (${limit} bytes)`);
    onOver();
  };
  req.on('data', count);
  req.pipe(stream);
}

/** The message of a 413 answer. */
export function bodyTooLargeMessage(limit: number): string {
  return `the request body exceeds the limit of ${limit} bytes (agent.kubernetes_api.max_request_body_size)`;
}
