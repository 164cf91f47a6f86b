/**
 * agentk's composition root: builds the features from resolved options, in an explicit list,
 * starts them in order and stops them in reverse. main.ts turns flags into AgentOptions; tests and
 * other programs call createAgentk/startAgentk directly.
 *
 *   const agent = await startAgentk({ kasAddress, token, apiServer: loadApiServerConfig({ kubeconfig }),
 *                                     observabilityListenAddress: '127.0.0.1:0' });
 *   agent.observabilityAddress;   // "127.0.0.1:41234"
 *   await agent.stop();           // drains sessions (GOAWAY, grace), closes everything
 */
import type { Head } from '../protocol/frames.js';
import type { HeaderPair } from '../protocol/http.js';
import type { SessionLimits, SessionTuning } from '../protocol/limits.js';
import { createLogger, type Logger } from '../shared/logger.js';
import { BUILD_INFO } from '../shared/version.js';
import { AgentConfigurationFeature } from './configuration/agent-configuration-feature.js';
import type { Feature } from './feature.js';
import type { ApiServerConfig } from './kubernetes-api/api-server.js';
import { KubernetesApiFeature } from './kubernetes-api/kubernetes-api-feature.js';
import { parseListenAddress, type ListenAddress } from '../shared/address.js';
import { AgentMetrics } from './observability/metrics.js';
import { ObservabilityServer } from './observability/observability-server.js';
import type { BackoffOptions } from './tunnel/backoff.js';
import { StreamHandlers } from './tunnel/stream-handlers.js';
import { TunnelPool } from './tunnel/tunnel-pool.js';

export interface AgentOptions {
  /** ws:// or wss:// URL of kas's agent endpoint. */
  kasAddress: string | URL;
  /** The agent token (sent as `Authorization: Bearer <token>`; never logged). */
  token: string;
  /** PEM CA certificates to trust for wss:// (default: the system roots). */
  kasCaCert?: string | Buffer;
  /** Extra headers of the WebSocket upgrade request. */
  kasHeaders?: HeaderPair[];
  /** Sessions to keep open to kas (default 2). */
  kasConnections?: number;
  /** `host:port` of /metrics, /liveness, /readiness (default ":8080"; port 0 picks a free port). */
  observabilityListenAddress?: string | ListenAddress;
  /** The API server to serve requests against: see loadApiServerConfig. */
  apiServer: ApiServerConfig;
  /** This pod's name and namespace, reported to kas (POD_NAME, POD_NAMESPACE). */
  podName?: string;
  podNamespace?: string;
  /** Default: pino JSON on stdout at info. */
  logger?: Logger;
  /** How long in-flight streams may finish when stopping, ms (default 5000). */
  drainGraceMs?: number;
  /** Reconnect backoff (default: base 1 s, cap 60 s, reset after 60 s up). */
  backoff?: Partial<BackoffOptions>;
  /** Session limits and tuning (defaults: src/protocol/limits.ts). */
  limits?: Partial<SessionLimits>;
  tuning?: Partial<SessionTuning>;
  /** How often the API server token file is re-read at most, ms (default 60 s). */
  tokenRefreshMs?: number;
  /** Collect the process's default metrics (default true). */
  defaultMetrics?: boolean;
}

/** A running (or ready to run) agentk. start() and stop() are each called once. */
export interface Agentk {
  start(): Promise<void>;
  /** Drains the sessions to kas (GOAWAY; in-flight streams get drainGraceMs), then stops every feature. */
  stop(): Promise<void>;
  /** The observability listener's `host:port`, once started. */
  readonly observabilityAddress: string;
  /** Sessions to kas that are open and accept streams. */
  readonly openSessions: number;
  /** Sessions not yet closed, draining ones included. */
  readonly liveSessions: number;
  readonly metrics: AgentMetrics;
  readonly logger: Logger;
}

export const DEFAULT_DRAIN_GRACE_MS = 5000;

export function createAgentk(options: AgentOptions): Agentk {
  const logger = options.logger ?? createLogger({ name: 'agentk' });
  const listen = typeof options.observabilityListenAddress === 'object' ? options.observabilityListenAddress : parseListenAddress(options.observabilityListenAddress ?? ':8080');
  if (!listen) throw new Error(`observabilityListenAddress is not host:port: ${String(options.observabilityListenAddress)}`);
  const kasAddress = typeof options.kasAddress === 'string' ? new URL(options.kasAddress) : options.kasAddress;
  const metrics = new AgentMetrics({ defaultMetrics: options.defaultMetrics });
  const handlers = new StreamHandlers(metrics);

  const kubernetesApi = new KubernetesApiFeature({
    apiServer: options.apiServer,
    handlers,
    metrics,
    logger: logger.child({ feature: 'kubernetes-api' }),
    tokenRefreshMs: options.tokenRefreshMs,
  });
  const configuration = new AgentConfigurationFeature({ handlers, rootLogger: logger, logger: logger.child({ feature: 'configuration' }) });
  const hello = (): Head => ({
    agentVersion: BUILD_INFO.version,
    agentCommit: BUILD_INFO.commit,
    podNamespace: options.podNamespace ?? '',
    podName: options.podName ?? '',
    kubernetesVersion: kubernetesApi.kubernetesVersion,
  });
  const pool = new TunnelPool({
    kasAddress,
    token: options.token,
    kasHeaders: options.kasHeaders ?? [],
    kasCaCert: options.kasCaCert,
    connections: options.kasConnections ?? 2,
    hello,
    handlers,
    metrics,
    logger: logger.child({ feature: 'tunnel' }),
    backoff: options.backoff,
    limits: options.limits,
    tuning: options.tuning,
  });
  const observability = new ObservabilityServer({ listen, metrics, ready: () => pool.openSessions > 0, logger: logger.child({ feature: 'observability' }) });
  const drainGraceMs = options.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS;
  // The features, in start order; they stop in reverse.
  const features: Feature[] = [
    { name: 'observability', start: () => observability.start(), stop: () => observability.stop() },
    kubernetesApi,
    configuration,
    {
      name: 'tunnel',
      start: async () => pool.start(),
      stop: () => pool.stop(drainGraceMs),
    },
  ];

  const started: Feature[] = [];
  let state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';

  async function stopStarted(): Promise<void> {
    while (started.length > 0) {
      const feature = started.pop()!;
      try {
        await feature.stop();
      } catch (err) {
        logger.error({ err, feature: feature.name }, 'feature failed to stop');
      }
    }
  }

  return {
    metrics,
    logger,
    get observabilityAddress() {
      return observability.address;
    },
    get openSessions() {
      return pool.openSessions;
    },
    get liveSessions() {
      return pool.liveSessions;
    },
    async start() {
      if (state !== 'new') throw new Error(`agentk cannot start: it is ${state}`);
      state = 'starting';
      logger.info({ version: BUILD_INFO.version, commit: BUILD_INFO.commit, kasAddress: kasAddress.href, connections: options.kasConnections ?? 2 }, 'agentk starting');
      for (const feature of features) {
        try {
          await feature.start();
        } catch (err) {
          logger.error({ err, feature: feature.name }, 'feature failed to start');
          state = 'stopping';
          await stopStarted();
          state = 'stopped';
          throw err;
        }
        started.push(feature);
      }
      state = 'running';
    },
    async stop() {
      if (state === 'stopped' || state === 'stopping') return;
      state = 'stopping';
      logger.info({ drainGraceMs }, 'agentk stopping');
      await stopStarted();
      state = 'stopped';
      logger.info('agentk stopped');
    },
  };
}

/** Creates and starts an agentk; rejects (with everything stopped) when it cannot start. */
export async function startAgentk(options: AgentOptions): Promise<Agentk> {
  const agent = createAgentk(options);
  await agent.start();
  return agent;
}
