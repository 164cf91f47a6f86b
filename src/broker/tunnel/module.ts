/**
 * The agent listener: agents dial in here over WebSocket, are authenticated, and run tunnel sessions
 * registered in the app's agent registry. Owns the tunnel's limits and the process-wide buffer budget.
 */
import { BufferBudget } from '../../protocol/flow.js';
import { AUTH } from '../auth/service.js';
import { listenerTls } from '../configuration/tls-reloader.js';
import { listenerModule } from '../listener-module.js';
import { defineModule } from '../module.js';
import { REPLICA_STATE } from '../replicas/service.js';
import { AgentListener } from './agent-listener.js';
import { AGENT_STREAMS, AgentStreams } from './agent-streams.js';
import { agentListenerConfig } from './config.js';
import { TunnelMetrics } from './metrics.js';

export const agentListenerModule = defineModule({
  name: 'agent_listener',
  owns: [agentListenerConfig],
  create(ctx) {
    const { listen, tunnel } = ctx.config.agent;
    const processBudget = new BufferBudget(tunnel.max_process_buffer);
    const metrics = new TunnelMetrics(ctx.metrics, () => processBudget.used);
    ctx.agents.onChange(() => metrics.connectedAgents.set(ctx.agents.agentCount));
    const rateLimit = ctx.services.get(REPLICA_STATE).rateLimit;
    const limit = listen.connections_per_token_per_minute;
    const streams = new AgentStreams();
    ctx.services.provide(AGENT_STREAMS, streams);
    const tls = listenerTls({ listener: 'agent', keyPrefix: 'agent.listen', files: listen, metrics: ctx.metrics, logger: ctx.logger });
    const listener = new AgentListener({
      listen,
      tunnel,
      tls,
      authenticator: ctx.services.get(AUTH).agents,
      registry: ctx.agents,
      streams,
      metrics,
      logger: ctx.logger,
      processBudget,
      connectionAllowed: (digest) => rateLimit.allow(digest, limit),
    });
    const module = listenerModule('agent', listener);
    // Stop following the files first: the listener's server is closing.
    return { ...module, stop: () => (tls?.close(), module.stop()) };
  },
});
