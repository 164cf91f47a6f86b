/** The observability listener: /metrics, /liveness, /readiness. */
import { defineModule } from '../module.js';
import { listenerModule } from '../listener-module.js';
import { observabilityConfig } from './config.js';
import { ObservabilityServer } from './observability-server.js';

export const observabilityModule = defineModule({
  name: 'observability',
  owns: [observabilityConfig],
  create: (ctx) => listenerModule('observability', new ObservabilityServer(ctx.config.observability.listen.address, ctx.metrics, ctx.readinessProblems)),
});
