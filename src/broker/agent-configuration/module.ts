/**
 * The agent configuration feature, kas half: reads each connected agent's configuration file (from
 * GitLab with kas's repository token, or standalone.config_dir), pushes it to agentk, and offers the
 * configuration in force to other modules (AGENT_CONFIGURATION). Off without a source.
 */
import { GITLAB } from '../gitlab/module.js';
import { defineModule } from '../module.js';
import { REPLICA_STATE } from '../replicas/service.js';
import { serviceKey } from '../services.js';
import { standaloneConfig } from '../standalone/config.js';
import { AgentConfigurationServer } from './agent-configuration.js';
import { agentConfigurationConfig } from './config.js';
import { DirectoryConfigSource } from './directory-source.js';
import { GitLabConfigSource } from './gitlab-source.js';
import { AgentConfigMetrics } from './metrics.js';

/** The configuration in force of every agent connected here, by section; absent when the feature is off. */
export const AGENT_CONFIGURATION = serviceKey<AgentConfigurationServer>('agent_configuration');

export const agentConfigurationModule = defineModule({
  name: 'agent_configuration',
  owns: [agentConfigurationConfig],
  reads: [standaloneConfig],
  create(ctx) {
    const { config, services } = ctx;
    const gitlab = services.find(GITLAB);
    const source = gitlab ? (gitlab.client.hasRepositoryToken ? new GitLabConfigSource(gitlab.client) : null) : config.standalone.config_dir ? new DirectoryConfigSource(config.standalone.config_dir) : null;
    if (gitlab && !source) ctx.logger.warn('gitlab.repository_token_file is not set: agent configuration files are not read');
    if (!source) return null;
    const feature = new AgentConfigurationServer({
      registry: ctx.agents,
      source,
      gitlab: gitlab?.client ?? null,
      pollPeriodMs: config.agent.configuration.poll_period,
      metrics: new AgentConfigMetrics(ctx.metrics),
      logger: ctx.logger,
    });
    services.get(REPLICA_STATE).gitPush.subscribe((projectId) => feature.pollProject(projectId));
    services.provide(AGENT_CONFIGURATION, feature);
    return { start: () => feature.start(), stop: () => feature.stop() };
  },
});
