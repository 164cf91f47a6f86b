/**
 * Agent registration (kas half): serves `agent_info` streams and keeps each connection's latest
 * registration, shown by the API for GitLab (connected_agents) on every replica and, in GitLab mode,
 * reported as `register_agent_at_kas` agent events. Comes after agent_listener (AGENT_STREAMS) and
 * gitlab (GITLAB).
 */
import { AGENT_INFO_STREAM } from '../../protocol/agent-info.js';
import { GITLAB } from '../gitlab/module.js';
import { defineModule } from '../module.js';
import { REPLICA_STATE } from '../replicas/service.js';
import { AGENT_STREAMS } from '../tunnel/agent-streams.js';
import { RegistrationMetrics } from './metrics.js';
import { RegistrationServer } from './registration-server.js';

export const agentRegistrationModule = defineModule({
  name: 'agent_registration',
  owns: [],
  create(ctx) {
    const server = new RegistrationServer({
      records: ctx.services.get(REPLICA_STATE).records,
      events: ctx.services.find(GITLAB)?.events ?? null,
      metrics: new RegistrationMetrics(ctx.metrics),
    });
    ctx.services.get(AGENT_STREAMS).register(AGENT_INFO_STREAM, (stream, connection, logger) => server.handle(stream, connection, logger));
    return null;
  },
});
