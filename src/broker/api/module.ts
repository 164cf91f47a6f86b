/** The API for GitLab: served when api.listen.authentication_secret_file is set. */
import { AGENT_CONFIGURATION } from '../agent-configuration/module.js';
import { readSecretFile } from '../configuration/secret-file.js';
import { GITLAB } from '../gitlab/module.js';
import { listenerModule } from '../listener-module.js';
import { defineModule } from '../module.js';
import { REPLICA_STATE } from '../replicas/service.js';
import { ApiServer } from './api-server.js';
import { apiConfig } from './config.js';
import { API_ROUTES, ApiRoutes } from './routes.js';

/** The registry of feature endpoints; early in the list so every feature module can add to it. */
export const apiRoutesModule = defineModule({
  name: 'api_routes',
  owns: [],
  create(ctx) {
    ctx.services.provide(API_ROUTES, new ApiRoutes());
    return null;
  },
});

export const apiModule = defineModule({
  name: 'api',
  owns: [apiConfig],
  create(ctx) {
    const { listen } = ctx.config.api;
    if (!listen.authentication_secret_file) return null;
    const { services } = ctx;
    const state = services.get(REPLICA_STATE);
    const agentConfig = services.find(AGENT_CONFIGURATION);
    const api = new ApiServer({
      address: listen.address,
      secret: readSecretFile('api.listen.authentication_secret_file', listen.authentication_secret_file),
      connections: (agentIds, projectIds) => state.records.connections(agentIds, projectIds),
      gitPush: (projectId, fullPath) => state.gitPush.publish(projectId, fullPath),
      gitlab: services.find(GITLAB)?.client ?? null,
      agentConfig: () => agentConfig,
      routes: services.get(API_ROUTES).all,
      logger: ctx.logger,
    });
    return listenerModule('api', api);
  },
});
