/** The registration module of agentk: its options, resolved, and the start-up warning about skipped telemetry. */
import type { AgentkModule, AgentkModuleContext } from '../module.js';
import { AgentRegistration } from './registration.js';
import { telemetryFromEnv } from './telemetry.js';

export function createRegistration(ctx: AgentkModuleContext, kubernetesVersion: () => Promise<string>): AgentkModule {
  const { options, logger } = ctx;
  const { telemetry, skipped } = telemetryFromEnv(options.telemetryEnvironment ?? {});
  for (const { name, reason } of skipped) logger.warn({ variable: name, reason }, 'telemetry variable left out of the registration');
  return new AgentRegistration({
    kas: ctx.kas,
    logger,
    metrics: ctx.metrics,
    pod: { name: options.podName ?? '', namespace: options.podNamespace ?? '', uid: options.podUid ?? '' },
    telemetry,
    kubernetesVersion,
    periodMs: options.registrationPeriodMs,
  });
}
