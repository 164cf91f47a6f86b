/**
 * The contract of a kas module (one feature: tunnel, kubernetes-api, agent-configuration, ...).
 * Each feature folder exports a factory made with `defineModule`; `modules.ts` lists the factories
 * in start order and `app.ts` runs them: every factory is created first (reading its files, so a bad
 * file is a configuration error before anything listens), then the modules start in order, drain
 * together and stop in reverse. docs/modules.md is the recipe for adding one.
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/logger.js';
import type { ConfigOf, ConfigPart } from './configuration/config-part.js';
import type { Services } from './services.js';
import type { AgentRegistry } from './tunnel/agent-registry.js';

/** The listeners of kas, by the name of their configuration section and in logs. */
export type ListenerName = 'agent' | 'kubernetes_api' | 'api' | 'private_api' | 'observability';

/** A running feature of kas. start, drain and stop are called by the app only, never concurrently. */
export interface KasModule {
  /** The listener this module owns, if any: its bound `host:port` is known once start resolved. */
  readonly listener?: { readonly name: ListenerName; address(): string };
  start(): Promise<void>;
  /** Stops taking new work and lets what runs finish, at most graceMs (shutdown; all modules at once). */
  drain?(graceMs: number): Promise<void>;
  /** Releases everything; called once, in reverse start order, only after a successful start. */
  stop(): Promise<void>;
  /** Why kas is not ready because of this module now, or null (for /readiness). */
  readiness?(): string | null;
}

/** What a module is created with. */
export interface ModuleContext<C> {
  /** The validated configuration, typed to the parts the module owns or reads. */
  readonly config: C;
  /** The root logger's child for this module (`{module: name}`). */
  readonly logger: Logger;
  /** The process's metrics registry: the module registers its own metrics here. */
  readonly metrics: Registry;
  /** What modules created earlier offer; a module offers its own with `services.provide`. */
  readonly services: Services;
  /** The agents connected to this kas process. */
  readonly agents: AgentRegistry;
  /** This replica's name (POD_NAME, else the host name). */
  readonly instanceName: string;
  /** Problems that make kas not ready now ([] when ready): the app's and every module's. */
  readonly readinessProblems: () => string[];
}

/** A feature of kas as the app sees it before creating it. */
export interface ModuleFactory<Owns extends readonly ConfigPart[] = readonly ConfigPart[]> {
  /** Short snake_case name, in logs (`module`) and errors. */
  readonly name: string;
  /** The configuration keys this module declares: the kas schema is composed of every factory's. */
  readonly owns: Owns;
  /** Builds the module, or null when the configuration leaves it off. Throws ConfigError on a bad file. */
  create(ctx: ModuleContext<unknown>): KasModule | null;
}

export interface ModuleDefinition<Owns extends readonly ConfigPart[], Reads extends readonly ConfigPart[]> {
  name: string;
  owns: Owns;
  /** Parts of other modules whose keys this module reads as well. */
  reads?: Reads;
  create(ctx: ModuleContext<ConfigOf<[...Owns, ...Reads]>>): KasModule | null;
}

/** A factory whose configuration type is that of its own parts (the ones it owns, plus those it reads). */
export function defineModule<const Owns extends readonly ConfigPart[], const Reads extends readonly ConfigPart[] = readonly []>(
  def: ModuleDefinition<Owns, Reads>,
): ModuleFactory<Owns> {
  return {
    name: def.name,
    owns: def.owns,
    create: (ctx) => def.create(ctx as ModuleContext<ConfigOf<[...Owns, ...Reads]>>),
  };
}
