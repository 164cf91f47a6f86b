/**
 * What a failed dial to kas means, for the log line and the connect-attempt metric. The point is
 * the mistakes of a first run: `--kas-address` naming another listener of kas (the Kubernetes API
 * proxy, the observability listener), another HTTP server, or the right one with the wrong scheme.
 * Those fail with a bare "socket hang up" or an HTTP status; agentk says instead that the address is
 * not a kas agent endpoint, what came back, and what to check.
 *
 * An answer is only called "not a kas agent endpoint" while agentk has never had a session at this
 * address: once it has, the same answers (a 404 of an ingress while kas restarts, a reset
 * connection) are passing trouble on the way, reported as before.
 */
import { KasRefusedError } from './kas-dialer.js';

/** The `result` label of agentk_tunnel_connect_attempts_total for a failed attempt. */
export type DialFailureResult = 'unauthorized' | 'refused' | 'not_kas_endpoint' | 'error';

export interface DialFailure {
  result: DialFailureResult;
  level: 'error' | 'warn';
  /** The log message, naming the address. */
  message: string;
  /** Fields for the log line besides the address. */
  fields: Record<string, string | number>;
}

/** Statuses kas's agent listener (or a proxy in front of it) gives to a WebSocket upgrade it refuses. */
const KAS_STATUSES = new Set([400, 401, 403, 426, 429, 500, 502, 503, 504]);

/** TLS errors of a server that does not speak TLS (a plain HTTP port dialed with wss://). */
const NOT_TLS = /wrong version number|packet length too long|http request|unknown protocol/i;

const WHERE = 'check --kas-address: it must name kas\'s agent listener (agent.listen, port 8150 by default)';

export function classifyDialFailure(err: unknown, url: URL, connectedBefore: boolean): DialFailure {
  const address = url.href;
  if (err instanceof KasRefusedError) {
    const fields: Record<string, string | number> = { status: err.status };
    if (err.contentType) fields.contentType = err.contentType;
    // kas's agent listener answers its refusals in text; a Kubernetes Status (JSON) comes from the
    // Kubernetes API proxy or an API server, which refuse the agent token for not being theirs.
    const kubernetesApi = err.unauthorized && /^application\/json\b/i.test(err.contentType ?? '');
    // An HTTPS port's answer to plain HTTP (kas's proxy listener, an API server, Go's net/http).
    if (!connectedBefore && err.status === 400 && /HTTP request to an HTTPS server/i.test(err.bodyStart)) {
      return { result: 'not_kas_endpoint', level: 'error', message: `${address} is not a kas agent endpoint: it is an HTTPS port that answered plain HTTP with 400 (use wss://, else ${WHERE})`, fields };
    }
    if (!connectedBefore && (kubernetesApi || !KAS_STATUSES.has(err.status))) {
      const what = kubernetesApi ? `HTTP ${err.status} with a JSON body, as a Kubernetes API (kas's proxy listener, an API server) answers` : `HTTP ${err.status} instead of switching protocols`;
      return { result: 'not_kas_endpoint', level: 'error', message: `${address} is not a kas agent endpoint: it answered the WebSocket upgrade with ${what}; ${WHERE}`, fields };
    }
    if (err.unauthorized) return { result: 'unauthorized', level: 'error', message: `${err.message}: check the token in --token-file or AGENTK_TOKEN`, fields };
    if (err.status === 426) return { result: 'refused', level: 'warn', message: `${err.message}: something between agentk and kas drops the WebSocket upgrade`, fields };
    return { result: 'refused', level: 'warn', message: err.message, fields };
  }
  const e = err as NodeJS.ErrnoException;
  const text = e?.message ?? String(err);
  const fields: Record<string, string | number> = { err: text };
  if (typeof e?.code === 'string') fields.code = e.code;
  if (!connectedBefore) {
    const tls = url.protocol === 'wss:';
    if (tls && NOT_TLS.test(text)) {
      return { result: 'not_kas_endpoint', level: 'error', message: `${address} is not a kas agent endpoint over TLS: the TLS handshake failed as it does against a plain HTTP port; use ws:// if kas's agent listener has no certificate, else ${WHERE}`, fields };
    }
    if (e?.code === 'ECONNRESET' || /socket hang up/i.test(text)) {
      const hint = tls ? WHERE : `a TLS port? use wss://, else ${WHERE}`;
      return { result: 'not_kas_endpoint', level: 'error', message: `${address} is not a kas agent endpoint: it closed the connection without answering the WebSocket upgrade (${hint})`, fields };
    }
    if (/^HPE_/.test(e?.code ?? '') || /Sec-WebSocket-Accept|Sec-WebSocket-Protocol|Sec-WebSocket-Extensions/i.test(text)) {
      return { result: 'not_kas_endpoint', level: 'error', message: `${address} is not a kas agent endpoint: its answer to the WebSocket upgrade is not a WebSocket handshake (${text}); ${WHERE}`, fields };
    }
  }
  return { result: 'error', level: 'warn', message: 'cannot connect to kas', fields };
}
