/**
 * agentk's composition root: creates the modules from resolved options, in an explicit list,
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
import { AgentConfigSectionsHub, AgentConfigurationReceiver, type AgentConfigSections } from './configuration/agent-configuration-receiver.js';
import type { AgentkModule, AgentkModuleFactory } from './module.js';
import { SharedInformers, type Informers } from './informers/informers.js';
import { clusterEventsModule, type ClusterEventsOptions } from './cluster-events/module.js';
import { createFluxModule } from './flux/module.js';
import { KubeJson } from './kubernetes-api/kube-json.js';
import { AgentLeadership, type LeaderElectionOptions } from './leader-election/module.js';
import { GitopsModule } from './gitops/module.js';
import { ApiServerClient, type ApiServerConfig } from './kubernetes-api/api-server.js';
import { KubernetesApiModule } from './kubernetes-api/kubernetes-api-module.js';
import { parseListenAddress, type ListenAddress } from '../shared/address.js';
import { AgentMetrics } from './observability/metrics.js';
import { followLogLevel } from './observability/log-level.js';
import { ObservabilityServer } from './observability/observability-server.js';
import { createRegistration } from './registration/module.js';
import type { BackoffOptions } from './tunnel/backoff.js';
import { KasStreams } from './tunnel/kas-streams.js';
import { StreamHandlers } from './tunnel/stream-handlers.js';
import { TunnelPool } from './tunnel/tunnel-pool.js';
import { WorkloadHealthMetrics } from './workload-health/metrics.js';
import { WorkloadHealthReporter, type WorkloadHealthOptions } from './workload-health/reporter.js';

export interface AgentOptions {
  /** ws:// or wss:// URL of kas's agent endpoint. */
  kasAddress: string | URL;
  /** The agent token (sent as `Authorization: Bearer <token>`; never logged). */
  token: string;
  /** PEM CA certificates to trust for wss:// (default: the system roots). */
  kasCaCert?: string | Buffer;
  /** The file kasCaCert was read from, followed for rotation (new dials use the new CA). */
  kasCaCertFile?: string;
  /** Extra headers of the WebSocket upgrade request. */
  kasHeaders?: HeaderPair[];
  /** Sessions to keep open to kas (default 2). */
  kasConnections?: number;
  /** `host:port` of /metrics, /liveness, /readiness (default ":8080"; port 0 picks a free port). */
  observabilityListenAddress?: string | ListenAddress;
  /** The API server to serve requests against: see loadApiServerConfig. */
  apiServer: ApiServerConfig;
  /** This pod's name, namespace and UID, reported to kas (POD_NAME, POD_NAMESPACE, POD_UID). */
  podName?: string;
  podNamespace?: string;
  podUid?: string;
  /**
   * Environment variables whose `GITLAB_AGENT_TELEMETRY_*` entries become the extra telemetry of the
   * registration (others are ignored; default none).
   */
  telemetryEnvironment?: NodeJS.ProcessEnv;
  /** How often agentk registers again with kas on every session, ms (default 5 min). */
  registrationPeriodMs?: number;
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
  /** The Lease that elects the one pod that applies GitOps manifests and follows Flux. */
  leaderElection?: LeaderElectionOptions;
  /** How often the last applied GitOps manifests are applied again (drift), ms (default 5 min). */
  gitopsReconcilePeriodMs?: number;
  /** Workload health reports (debounce, caps); `false` turns them off. */
  workloadHealth?: WorkloadHealthOptions | false;
  /** Cluster events sent to kas (flush interval); `false` turns them off (agentk then watches no Events). */
  clusterEvents?: ClusterEventsOptions | false;
  /** Flux reconcile-on-push (src/agent/flux): off without `gitlabUrls`. */
  flux?: AgentFluxOptions;
}

/** Flux reconcile-on-push options (flags --gitlab-external-url, --flux-notification-controller-url). */
export interface AgentFluxOptions {
  /** Where GitLab (standalone: the Git server) serves repositories; GitRepositories under them are followed. */
  gitlabUrls: ReadonlyArray<string | URL>;
  /** Base URL of Flux's webhook receiver (default http://webhook-receiver.flux-system.svc.cluster.local). */
  notificationControllerUrl?: string | URL;
  /** How often the Flux APIs are looked for again, ms (default 5 min). */
  discoveryIntervalMs?: number;
  /** How often every Receiver is made sure of again, ms (default 60 s). */
  resyncIntervalMs?: number;
  /** Reopen backoff of the flux_git_push stream. */
  backoff?: Partial<BackoffOptions>;
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
  /** The informer layer the modules share (stopped when agentk stops). */
  readonly informers: Informers;
  /** Streams towards kas, as modules see them (ctx.kas): for integration tests of a feature's agentk half. */
  readonly kas: KasStreams;
  /** The agent configuration in force, by section (ctx.configuration). */
  readonly configuration: AgentConfigSections;
}

export const DEFAULT_DRAIN_GRACE_MS = 5000;

/** What the modules share in agentk: the handshake's cluster facts and the parts the app reports on. */
interface Shared {
  /** The API server's gitVersion ('' until known), for the handshake. */
  kubernetesVersion: string;
  observability: ObservabilityServer | null;
  pool: TunnelPool | null;
  /** agentk's client of its API server: the proxy's requests and the informers' lists and watches. */
  apiClient: ApiServerClient;
  kubernetesApi: KubernetesApiModule | null;
}

/** The modules of agentk, in start order (they stop in reverse). */
function agentkModules(shared: Shared, sections: AgentConfigSectionsHub, leadership: AgentLeadership): AgentkModuleFactory[] {
  return [
    {
      name: 'observability',
      create: (ctx) => {
        const listen = typeof ctx.options.observabilityListenAddress === 'object' ? ctx.options.observabilityListenAddress : parseListenAddress(ctx.options.observabilityListenAddress ?? ':8080');
        if (!listen) throw new Error(`observabilityListenAddress is not host:port: ${String(ctx.options.observabilityListenAddress)}`);
        const server = new ObservabilityServer({ listen, metrics: ctx.metrics, ready: () => (shared.pool?.openSessions ?? 0) > 0, logger: ctx.logger });
        shared.observability = server;
        const stopFollowing = followLogLevel(ctx.configuration, ctx.rootLogger);
        return {
          name: 'observability',
          start: () => server.start(),
          stop: async () => {
            stopFollowing();
            await server.stop();
          },
        };
      },
    },
    {
      name: 'kubernetes_api',
      create: (ctx) => {
        const module = new KubernetesApiModule({ apiServer: ctx.options.apiServer, client: shared.apiClient, handlers: ctx.handlers, metrics: ctx.metrics, logger: ctx.logger, tokenRefreshMs: ctx.options.tokenRefreshMs });
        shared.kubernetesApi = module;
        return {
          name: module.name,
          start: async () => {
            await module.start();
            shared.kubernetesVersion = module.kubernetesVersion;
          },
          stop: () => module.stop(),
        };
      },
    },
    { name: 'configuration', create: (ctx) => new AgentConfigurationReceiver({ handlers: ctx.handlers, rootLogger: ctx.rootLogger, logger: ctx.logger, sections }) },
    {
      name: 'registration',
      create: (ctx) =>
        createRegistration(ctx, async () => {
          const version = (await shared.kubernetesApi?.refreshVersion()) ?? '';
          if (version) shared.kubernetesVersion = version;
          return version;
        }),
    },
    {
      name: 'tunnel',
      create: (ctx) => {
        const { options } = ctx;
        const hello = (): Head => ({
          agentVersion: BUILD_INFO.version,
          agentCommit: BUILD_INFO.commit,
          podNamespace: options.podNamespace ?? '',
          podName: options.podName ?? '',
          kubernetesVersion: shared.kubernetesVersion,
        });
        const pool = new TunnelPool({
          kasAddress: kasUrl(options),
          token: options.token,
          kasHeaders: options.kasHeaders ?? [],
          kasCaCert: options.kasCaCert,
          kasCaCertFile: options.kasCaCertFile,
          connections: options.kasConnections ?? 2,
          hello,
          handlers: ctx.handlers,
          kasStreams: ctx.kas,
          metrics: ctx.metrics,
          logger: ctx.logger,
          backoff: options.backoff,
          limits: options.limits,
          tuning: options.tuning,
        });
        shared.pool = pool;
        const drainGraceMs = options.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS;
        return {
          name: 'tunnel',
          start: async () => pool.start(),
          stop: () => {
            // Modules waiting to open a stream towards kas are told at once; open streams get the grace.
            ctx.kas.stop();
            return pool.stop(drainGraceMs);
          },
        };
      },
    },
    {
      name: 'workload_health',
      create: (ctx) => {
        const options = ctx.options.workloadHealth;
        if (options === false) return { name: 'workload_health', start: async () => {}, stop: async () => {} };
        return new WorkloadHealthReporter({ informers: ctx.informers, kas: ctx.kas, logger: ctx.logger, metrics: new WorkloadHealthMetrics(ctx.metrics.registry) }, options);
      },
    },
    {
      name: 'cluster_events',
      create: (ctx) => {
        const options = ctx.options.clusterEvents;
        if (options === false) return { name: 'cluster_events', start: async () => {}, stop: async () => {} };
        // After the tunnel: it stops first, ending its stream to kas before the sessions drain.
        return clusterEventsModule(shared.apiClient, options).create(ctx);
      },
    },
    { name: 'leader_election', create: () => leadership.module() },
    { name: 'flux', create: (ctx) => createFluxModule(ctx, new KubeJson(shared.apiClient)) },
    { name: 'gitops', create: (ctx) => new GitopsModule(ctx) },
  ];
}

function kasUrl(options: AgentOptions): URL {
  return typeof options.kasAddress === 'string' ? new URL(options.kasAddress) : options.kasAddress;
}

export function createAgentk(options: AgentOptions): Agentk {
  const logger = options.logger ?? createLogger({ name: 'agentk' });
  const kasAddress = kasUrl(options);
  const metrics = new AgentMetrics({ defaultMetrics: options.defaultMetrics });
  const handlers = new StreamHandlers(metrics);
  const kas = new KasStreams();
  const configuration = new AgentConfigSectionsHub(logger.child({ module: 'configuration' }));
  const drainGraceMs = options.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS;
  const apiClient = new ApiServerClient(options.apiServer, { logger: logger.child({ module: 'kubernetes_api' }), tokenRefreshMs: options.tokenRefreshMs, metrics });
  // Informers start on a feature's first acquire and are stopped after every module has stopped.
  const informers = new SharedInformers({ client: apiClient, metrics, logger: logger.child({ module: 'informers' }) });
  const shared: Shared = { kubernetesVersion: '', observability: null, pool: null, apiClient, kubernetesApi: null };
  const leader = new AgentLeadership(options, kas, metrics, logger.child({ module: 'leader_election' }));
  const modules = agentkModules(shared, configuration, leader).map((factory) =>
    factory.create({ options, rootLogger: logger, logger: logger.child({ module: factory.name }), metrics, handlers, configuration, kas, informers, leader }),
  );
  const started: AgentkModule[] = [];
  let state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';

  async function stopStarted(): Promise<void> {
    while (started.length > 0) {
      const module = started.pop()!;
      try {
        await module.stop();
      } catch (err) {
        logger.error({ err, module: module.name }, 'module failed to stop');
      }
    }
    informers.stop();
    await informers.closed();
    apiClient.close();
  }

  return {
    metrics,
    logger,
    informers,
    kas,
    configuration,
    get observabilityAddress() {
      return shared.observability!.address;
    },
    get openSessions() {
      return shared.pool?.openSessions ?? 0;
    },
    get liveSessions() {
      return shared.pool?.liveSessions ?? 0;
    },
    async start() {
      if (state !== 'new') throw new Error(`agentk cannot start: it is ${state}`);
      state = 'starting';
      logger.info({ version: BUILD_INFO.version, commit: BUILD_INFO.commit, kasAddress: kasAddress.href, connections: options.kasConnections ?? 2 }, 'agentk starting');
      for (const module of modules) {
        try {
          await module.start();
        } catch (err) {
          logger.error({ err, module: module.name }, 'module failed to start');
          state = 'stopping';
          await stopStarted();
          state = 'stopped';
          throw err;
        }
        started.push(module);
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
