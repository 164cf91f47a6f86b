/**
 * The Kubernetes API proxy: kubectl, CI jobs and GitLab call it; each request is authenticated,
 * routed to a session of its agent (on this replica or another) and streamed through the tunnel.
 */
import { AUTH } from '../auth/service.js';
import { listenerTls } from '../configuration/tls-reloader.js';
import { listenerModule } from '../listener-module.js';
import { defineModule } from '../module.js';
import { PEERS, REPLICA_STATE } from '../replicas/service.js';
import { AgentRouter } from '../routing/agent-router.js';
import { kubernetesApiConfig } from './config.js';
import { ProxyMetrics } from './metrics.js';
import { KubernetesApiProxyServer } from './proxy-server.js';

export const kubernetesApiModule = defineModule({
  name: 'kubernetes_api',
  owns: [kubernetesApiConfig],
  create(ctx) {
    const { services } = ctx;
    const config = ctx.config.agent.kubernetes_api;
    const metrics = new ProxyMetrics(ctx.metrics);
    const auth = services.get(AUTH);
    const router = new AgentRouter(ctx.agents, metrics, services.get(REPLICA_STATE).presence, services.get(PEERS));
    const tls = listenerTls({ listener: 'kubernetes_api', keyPrefix: 'agent.kubernetes_api.listen', files: config.listen, metrics: ctx.metrics, logger: ctx.logger });
    const proxy = new KubernetesApiProxyServer({
      config,
      tls,
      corsOrigin: auth.corsOrigin,
      authenticator: auth.proxy,
      router,
      metrics,
      logger: ctx.logger,
    });
    const module = listenerModule('kubernetes_api', proxy);
    // Stop following the files first: the listener's server is closing.
    return { ...module, stop: () => (tls?.close(), module.stop()) };
  },
});
