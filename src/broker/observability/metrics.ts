/** kas's Prometheus metrics: one registry per process (per app instance in tests). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class KasMetrics {
  readonly registry = new Registry();
  readonly connectedAgents = new Gauge({ name: 'kas_connected_agents', help: 'Agents with at least one open session on this kas.', registers: [this.registry] });
  readonly sessions = new Gauge({ name: 'kas_agent_sessions', help: 'Open agent sessions (tunnel connections) on this kas.', registers: [this.registry] });
  readonly agentConnections = new Counter({ name: 'kas_agent_connections_total', help: 'Agent connection attempts by outcome.', labelNames: ['outcome'] as const, registers: [this.registry] });
  readonly sessionCloses = new Counter({ name: 'kas_agent_session_closes_total', help: 'Closed agent sessions by error code (none for a clean close).', labelNames: ['code'] as const, registers: [this.registry] });
  readonly proxyRequests = new Counter({ name: 'kas_proxy_requests_total', help: 'Kubernetes API proxy requests by response status class and credential kind.', labelNames: ['status', 'credential'] as const, registers: [this.registry] });
  readonly proxyErrors = new Counter({ name: 'kas_proxy_errors_total', help: 'Kubernetes API proxy requests that failed in kas or the tunnel, by error code.', labelNames: ['code'] as const, registers: [this.registry] });
  readonly routingWait = new Histogram({ name: 'kas_routing_wait_seconds', help: 'Time a proxy request waited for a session of its agent.', buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 20], registers: [this.registry] });
  readonly agentConfigUpdates = new Counter({ name: 'kas_agent_config_updates_total', help: 'New valid agent configurations put in force.', registers: [this.registry] });
  readonly agentConfigErrors = new Counter({ name: 'kas_agent_config_errors_total', help: 'Agent configuration problems by reason: invalid (a broken file), fetch (the file could not be read), gitlab (GitLab could not be told), agent (agentk did not apply it).', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly agentConfigsInvalid = new Gauge({ name: 'kas_agent_configs_invalid', help: 'Connected agents whose configuration file is invalid (their last valid configuration stays in force).', registers: [this.registry] });
  readonly redisErrors = new Counter({ name: 'kas_redis_errors_total', help: 'Failed Redis operations by operation (kas keeps serving its own agents meanwhile).', labelNames: ['op'] as const, registers: [this.registry] });
  readonly rateLimitHits = new Counter({ name: 'kas_agent_connection_rate_limited_total', help: 'Agent connections refused by the per-token connection rate limit.', registers: [this.registry] });
  readonly routedRequests = new Counter({ name: 'kas_routed_requests_total', help: 'Proxy requests by where the agent was found: this replica (local) or another (peer).', labelNames: ['via'] as const, registers: [this.registry] });
  /** Where the buffered-bytes gauge reads from at scrape time. */
  bufferedBytesSource: () => number = () => 0;
  readonly tunnelBufferedBytes: Gauge = new Gauge({
    name: 'kas_tunnel_buffered_bytes',
    help: 'Bytes received over tunnels and not yet consumed, all sessions.',
    registers: [this.registry],
    collect: (): void => this.tunnelBufferedBytes.set(this.bufferedBytesSource()),
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
