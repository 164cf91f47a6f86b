/** The factory of agentk's flux module (listed in agentkModules() of app.ts). */
import type { AgentkModule, AgentkModuleContext } from '../module.js';
import { DEFAULT_NOTIFICATION_CONTROLLER_URL, FluxModule } from './flux-module.js';
import { parseGitLabUrls } from './git-url.js';
import type { KubeRequester } from './kube.js';
import { FluxAgentMetrics } from './metrics.js';

export function createFluxModule(ctx: AgentkModuleContext, kube: KubeRequester): AgentkModule {
  const o = ctx.options.flux;
  const gitlabUrls = parseGitLabUrls((o?.gitlabUrls ?? []).map((u) => String(u)));
  return new FluxModule({
    options: {
      gitlabUrls,
      notificationControllerUrl: new URL(String(o?.notificationControllerUrl ?? DEFAULT_NOTIFICATION_CONTROLLER_URL)),
      discoveryIntervalMs: o?.discoveryIntervalMs,
      resyncIntervalMs: o?.resyncIntervalMs,
      backoff: o?.backoff,
    },
    kube,
    informers: ctx.informers,
    leader: ctx.leader,
    kas: ctx.kas,
    metrics: new FluxAgentMetrics(ctx.metrics.registry),
    logger: ctx.logger,
  });
}
