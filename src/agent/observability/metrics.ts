/**
 * agentk's Prometheus metrics, in a registry of its own (several agents may run in one test
 * process). docs/agentk.md lists them; the names are part of the product.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { TalliedCounter } from '../../shared/tallied-counter.js';

const REQUEST = { direction: 'request' } as const;
const RESPONSE = { direction: 'response' } as const;

/** How a proxied request ended. */
export type StreamOutcome = 'ok' | 'upgraded' | 'bad_request' | 'forbidden' | 'upstream_unavailable' | 'upstream_error' | 'cancelled' | 'unknown_type';

export class AgentMetrics {
  readonly registry = new Registry();
  /** Sessions to kas that completed the handshake and are not draining. */
  readonly sessions: Gauge;
  /** Attempts to connect to kas, by result: ok, unauthorized, refused (other HTTP answer), not_kas_endpoint, error. */
  readonly connectAttempts: Counter<'result'>;
  /** Streams served, by outcome. */
  readonly streamsServed: TalliedCounter<'outcome'>;
  /**
   * Body and raw bytes relayed by the Kubernetes API proxy: request (to the API server) and
   * response. Counted for every chunk, so tallied: the counter takes the sums when it is scraped.
   */
  readonly bytesRelayed: TalliedCounter<'direction'>;
  /** CA files reloaded after they changed, by file: kas_ca (--kas-ca-cert-file) or api_server_ca. */
  readonly tlsReloads: Counter<'file'>;
  /** Changed CA files that were not usable (the previous CA was kept), by file. */
  readonly tlsReloadErrors: Counter<'file'>;
  /** Objects in the informer caches, by resource (plural, `.group` for non-core groups). */
  readonly informerObjects: Gauge<'resource'>;
  /** Lists after an informer's first one (410 Gone, failed list retried), by resource. */
  readonly informerRelists: Counter<'resource'>;
  /** Watches started again, by resource and reason (ended, expired, error). */
  readonly informerWatchRestarts: Counter<'resource' | 'reason'>;
  /** Response bytes read from the Kubernetes API server and not yet handed to the tunnel (set by the Kubernetes API module). */
  readonly apiBufferedBytes: Gauge;
  /** What apiBufferedBytes reports when scraped. */
  apiBufferedSource: (() => number) | null = null;

  /** Counts `bytes` relayed in `direction` (agentk_kubernetes_api_bytes_total). */
  relayed(direction: 'request' | 'response', bytes: number): void {
    this.bytesRelayed.inc(direction === 'request' ? REQUEST : RESPONSE, bytes);
  }

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.sessions = new Gauge({ name: 'agentk_tunnel_sessions', help: 'Sessions to kas that are open (handshake done, not draining).', registers });
    this.connectAttempts = new Counter({ name: 'agentk_tunnel_connect_attempts_total', help: 'Attempts to connect to kas, by result (ok, unauthorized, refused, not_kas_endpoint, error).', labelNames: ['result'], registers });
    this.streamsServed = new TalliedCounter({ name: 'agentk_streams_served_total', help: 'Streams served for kas, by outcome.', labelNames: ['outcome'], registers });
    this.bytesRelayed = new TalliedCounter({ name: 'agentk_kubernetes_api_bytes_total', help: 'Bytes relayed between kas and the Kubernetes API server, by direction (request, response).', labelNames: ['direction'], registers });
    this.tlsReloads = new Counter({ name: 'agentk_tls_reloads_total', help: 'CA files reloaded after they changed, by file (kas_ca, api_server_ca).', labelNames: ['file'], registers });
    this.tlsReloadErrors = new Counter({ name: 'agentk_tls_reload_errors_total', help: 'Changed CA files that were not usable (the previous CA was kept), by file (kas_ca, api_server_ca).', labelNames: ['file'], registers });
    const bufferedNow = () => this.apiBufferedSource?.() ?? 0;
    this.apiBufferedBytes = new Gauge({
      name: 'agentk_kubernetes_api_buffered_bytes',
      help: 'Bytes of Kubernetes API server responses that agentk holds: read from the API server and not yet handed to the connection to kas (clients that read slowly or not at all).',
      registers,
      collect() {
        this.set(bufferedNow());
      },
    });
    this.informerObjects = new Gauge({ name: 'agentk_informer_objects', help: 'Objects in the informer caches, by resource.', labelNames: ['resource'], registers });
    this.informerRelists = new Counter({ name: 'agentk_informer_relists_total', help: 'Informer lists after the first one (410 Gone or a failed list), by resource.', labelNames: ['resource'], registers });
    this.informerWatchRestarts = new Counter({ name: 'agentk_informer_watch_restarts_total', help: 'Informer watches started again, by resource and reason (ended, expired, error).', labelNames: ['resource', 'reason'], registers });
  }
}
