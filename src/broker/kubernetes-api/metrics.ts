/** Metrics of the Kubernetes API proxy and of routing its requests to an agent. */
import { Counter, Histogram, type Registry } from 'prom-client';
import { TalliedCounter } from '../../shared/tallied-counter.js';

export class ProxyMetrics {
  /** One per request: tallied, added to the counter at each scrape. */
  readonly proxyRequests: TalliedCounter<'status' | 'credential'>;
  readonly proxyErrors: Counter<'code'>;
  readonly routingWait: Histogram;
  readonly routedRequests: TalliedCounter<'via'>;
  readonly unexpectedErrors: Counter<'kind'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.proxyRequests = new TalliedCounter({ name: 'kas_proxy_requests_total', help: 'Kubernetes API proxy requests by response status class and credential kind.', labelNames: ['status', 'credential'], registers });
    this.proxyErrors = new Counter({ name: 'kas_proxy_errors_total', help: 'Kubernetes API proxy requests that failed in kas or the tunnel, by error code.', labelNames: ['code'], registers });
    this.routingWait = new Histogram({ name: 'kas_routing_wait_seconds', help: 'Time a proxy request waited for a session of its agent.', buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 20], registers });
    this.routedRequests = new TalliedCounter({ name: 'kas_routed_requests_total', help: 'Proxy requests by where the agent was found: this replica (local) or another (peer).', labelNames: ['via'], registers });
    this.unexpectedErrors = new Counter({ name: 'kas_proxy_unexpected_errors_total', help: 'Proxy requests that failed on an unexpected exception in kas (a bug): answered 500 or cut, by kind (request or upgrade).', labelNames: ['kind'], registers });
  }
}
