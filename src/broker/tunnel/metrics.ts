/** Metrics of the agent listener and the tunnel sessions agents open to it. */
import { Counter, Gauge, type Registry } from 'prom-client';

export class TunnelMetrics {
  readonly connectedAgents: Gauge;
  readonly sessions: Gauge;
  readonly agentConnections: Counter<'outcome'>;
  readonly sessionCloses: Counter<'code'>;
  /** Registered agent connections that ended, by DisconnectReason (agent-registry.ts). */
  readonly agentDisconnects: Counter<'reason'>;
  readonly rateLimitHits: Counter;
  readonly tunnelBufferedBytes: Gauge;

  /** `bufferedBytes` is read at scrape time: bytes received over tunnels and not yet consumed. */
  constructor(registry: Registry, bufferedBytes: () => number) {
    const registers = [registry];
    this.connectedAgents = new Gauge({ name: 'kas_connected_agents', help: 'Agents with at least one open session on this kas.', registers });
    this.sessions = new Gauge({ name: 'kas_agent_sessions', help: 'Open agent sessions (tunnel connections) on this kas.', registers });
    this.agentConnections = new Counter({ name: 'kas_agent_connections_total', help: 'Agent connection attempts by outcome.', labelNames: ['outcome'], registers });
    this.sessionCloses = new Counter({ name: 'kas_agent_session_closes_total', help: 'Closed agent sessions by error code (none for a clean close).', labelNames: ['code'], registers });
    this.agentDisconnects = new Counter({
      name: 'kas_agent_disconnects_total',
      help: 'Agent connections that ended after their handshake, by reason (drain, keepalive_timeout, token_revoked, closed_by_agent, connection_lost, error).',
      labelNames: ['reason'],
      registers,
    });
    this.rateLimitHits = new Counter({ name: 'kas_agent_connection_rate_limited_total', help: 'Agent connections refused by the per-token connection rate limit.', registers });
    const gauge: Gauge = new Gauge({
      name: 'kas_tunnel_buffered_bytes',
      help: 'Bytes received over tunnels and not yet consumed, all sessions.',
      registers,
      collect: (): void => gauge.set(bufferedBytes()),
    });
    this.tunnelBufferedBytes = gauge;
  }
}
