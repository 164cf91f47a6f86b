/**
 * The contract of an agentk module (one feature: observability, kubernetes-api, configuration,
 * tunnel, ...). Each feature folder exports a factory; app.ts lists the factories in start order,
 * creates them all, starts them in order and stops them in reverse, so a module may rely on every
 * module before it being up while it runs. docs/modules.md is the recipe for adding one.
 */
import type { Logger } from '../shared/logger.js';
import type { AgentOptions } from './app.js';
import type { AgentConfigSections } from './configuration/agent-configuration-receiver.js';
import type { Informers } from './informers/informers.js';
import type { AgentMetrics } from './observability/metrics.js';
import type { Leadership } from './leader-election/leader-elector.js';
import type { KasStreams } from './tunnel/kas-streams.js';
import type { StreamHandlers } from './tunnel/stream-handlers.js';

/** A running module of agentk. start and stop are called by the app only, never concurrently. */
export interface AgentkModule {
  /** Short name for logs: the feature's folder name. */
  readonly name: string;
  /** Starts serving. Rejects when the module cannot start; agentk then stops what had started. */
  start(): Promise<void>;
  /** Stops serving and releases every resource; called once, only after a successful start. */
  stop(): Promise<void>;
}

/** What a module is created with. */
export interface AgentkModuleContext {
  /** agentk's options (flags and environment, resolved). */
  readonly options: AgentOptions;
  /** agentk's root logger: the configuration's log level applies to it. */
  readonly rootLogger: Logger;
  /** The root logger's child for this module (`{module: name}`). */
  readonly logger: Logger;
  readonly metrics: AgentMetrics;
  /** Where a module registers the stream types it serves for kas (announced in the handshake). */
  readonly handlers: StreamHandlers;
  /** The agent configuration kas sends, by section, latest value first. */
  readonly configuration: AgentConfigSections;
  /** Streams towards kas: open one of a type kas serves (waiting for a session), or follow sessions. */
  readonly kas: KasStreams;
  /**
   * Shared list-and-watch caches of cluster objects (src/agent/informers): acquire in start, release
   * in stop. They run until agentk has stopped every module.
   */
  readonly informers: Informers;
  /**
   * Whether this pod is the agent's leader (a Lease in agentk's namespace; module leader_election).
   * Features that must run on one pod of the Deployment only (GitOps apply, Flux) follow it.
   */
  readonly leader: Leadership;
}

/** A feature of agentk as the app sees it before creating it. */
export interface AgentkModuleFactory {
  readonly name: string;
  create(ctx: AgentkModuleContext): AgentkModule;
}
