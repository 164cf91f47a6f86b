/** Metrics of the agent configuration feature. */
import { Counter, Gauge, type Registry } from 'prom-client';

export class AgentConfigMetrics {
  readonly agentConfigUpdates: Counter;
  readonly agentConfigErrors: Counter<'reason'>;
  readonly agentConfigsInvalid: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.agentConfigUpdates = new Counter({ name: 'kas_agent_config_updates_total', help: 'New valid agent configurations put in force.', registers });
    this.agentConfigErrors = new Counter({
      name: 'kas_agent_config_errors_total',
      help: 'Agent configuration problems by reason: invalid (a broken file), fetch (the file could not be read), gitlab (GitLab could not be told), agent (agentk did not apply it).',
      labelNames: ['reason'],
      registers,
    });
    this.agentConfigsInvalid = new Gauge({ name: 'kas_agent_configs_invalid', help: 'Connected agents whose configuration file is invalid (their last valid configuration stays in force).', registers });
  }
}
