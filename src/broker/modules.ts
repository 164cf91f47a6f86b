/**
 * kas's modules, in start order (they stop in reverse). A module may use what the modules before it
 * offer (services.ts). The configuration schema is composed of their parts (configuration/schema.ts).
 */
import { agentConfigurationModule } from './agent-configuration/module.js';
import { agentRegistrationModule } from './agent-registration/module.js';
import { clusterEventsModule } from './cluster-events/module.js';
import { fluxModule } from './flux/module.js';
import { apiModule, apiRoutesModule } from './api/module.js';
import { gitlabModule, usageMetricsModule } from './gitlab/module.js';
import { gitopsModule } from './gitops/module.js';
import { gitopsStatusModule } from './gitops/status-module.js';
import { kubernetesApiModule } from './kubernetes-api/module.js';
import { observabilityModule } from './observability/module.js';
import { replicasModule } from './replicas/module.js';
import { standaloneModule } from './standalone/module.js';
import { agentListenerModule } from './tunnel/module.js';
import { workloadHealthModule } from './workload-health/module.js';

export const KAS_MODULES = [
  observabilityModule,
  replicasModule,
  apiRoutesModule,
  gitlabModule,
  standaloneModule,
  agentListenerModule,
  agentRegistrationModule,
  clusterEventsModule,
  kubernetesApiModule,
  agentConfigurationModule,
  fluxModule,
  gitopsModule,
  workloadHealthModule,
  gitopsStatusModule,
  apiModule,
  usageMetricsModule,
] as const;
