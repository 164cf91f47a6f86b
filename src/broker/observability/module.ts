/** The observability listener: /metrics, /liveness, /readiness. */
import { defineModule } from '../module.js';
import { listenerModule } from '../listener-module.js';
import { observabilityConfig, shutdownConfig } from './config.js';
import { ObservabilityServer } from './observability-server.js';

export const observabilityModule = defineModule({
  name: 'observability',
  // shutdown_delay is read by the app (app.ts), which turns not ready and waits before draining.
  owns: [observabilityConfig, shutdownConfig],
  create: (ctx) => listenerModule('observability', new ObservabilityServer(ctx.config.observability.listen.address, ctx.metrics, ctx.readinessProblems)),
});
