/**
 * kas's composition root: creates the modules of modules.ts from the configuration (each reads its
 * own files then, so a bad one is a configuration error before anything listens), starts them in
 * order and stops them in reverse. GitLab mode when the configuration has a `gitlab` section,
 * standalone mode otherwise: the same listeners, proxy and tunnel, different authenticators.
 */
import { hostname } from 'node:os';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createLogger, type Logger } from '../shared/logger.js';
import type { KasConfig } from './configuration/schema.js';
import type { KasModule, ListenerName, ModuleFactory } from './module.js';
import { KAS_MODULES } from './modules.js';
import { Services, type ServiceKey } from './services.js';
import { AgentRegistry } from './tunnel/agent-registry.js';

export type { ListenerName } from './module.js';

export interface KasAppOptions {
  config: KasConfig;
  logger?: Logger;
  /** The modules to run, in start order (default: modules.ts). */
  modules?: readonly ModuleFactory[];
}

interface Created {
  name: string;
  module: KasModule;
}

export class KasApp {
  readonly config: KasConfig;
  readonly logger: Logger;
  /** Every module's metrics and the process's, as /metrics serves them. */
  readonly metrics = new Registry();
  readonly registry = new AgentRegistry();
  /** Bound "host:port" of each listener, once started. */
  readonly addresses: Partial<Record<ListenerName, string>> = {};
  private readonly services = new Services();
  private readonly modules: Created[] = [];
  private started: Created[] = [];
  private state: 'new' | 'starting' | 'running' | 'shutting down' = 'new';
  /** Ends a running shutdown delay early (set only while shutdown() waits it out). */
  private endDelay: (() => void) | null = null;

  /** Creates every module; throws ConfigError (naming the key) when a file or setting is wrong. */
  constructor(options: KasAppOptions) {
    const { config } = options;
    this.config = config;
    this.logger = options.logger ?? createLogger({ name: 'kas', level: config.observability.logging.level });
    collectDefaultMetrics({ register: this.metrics });
    const instanceName = process.env.POD_NAME ?? hostname();
    for (const factory of options.modules ?? KAS_MODULES) {
      const module = factory.create({
        config,
        logger: this.logger.child({ module: factory.name }),
        metrics: this.metrics,
        services: this.services,
        agents: this.registry,
        instanceName,
        readinessProblems: () => this.readinessProblems(),
      });
      if (module) this.modules.push({ name: factory.name, module });
    }
  }

  /** What a module offers (see services.ts), or null when the module that offers it is off. */
  service<T>(key: ServiceKey<T>): T | null {
    return this.services.find(key);
  }

  /** Why kas is not ready now; [] when it is. */
  readinessProblems(): string[] {
    if (this.state === 'new' || this.state === 'starting') return ['starting or shutting down'];
    const problems: string[] = this.state === 'shutting down' ? ['shutting down'] : [];
    for (const { module } of this.started) {
      const problem = module.readiness?.();
      if (problem) problems.push(problem);
    }
    return problems;
  }

  async start(): Promise<void> {
    this.state = 'starting';
    for (const created of this.modules) {
      await created.module.start();
      this.started.push(created);
      const listener = created.module.listener;
      if (listener) {
        const address = listener.address();
        this.addresses[listener.name] = address;
        this.logger.info({ listener: listener.name, address }, 'listening');
      }
    }
    if (this.state === 'starting') this.state = 'running';
  }

  /**
   * Graceful shutdown: not ready at once; then, for delayMs (`shutdown_delay`), everything keeps
   * accepting and serving, because an ingress removes the endpoint only after it sees /readiness
   * fail and sends new connections here until then; then drain agents and in-flight requests (at
   * most graceMs) and stop. A second call while one runs does nothing.
   */
  async shutdown(graceMs = this.config.agent.tunnel.drain_grace, delayMs = this.config.shutdown_delay): Promise<void> {
    if (this.state === 'shutting down') return;
    this.state = 'shutting down';
    if (delayMs > 0) {
      this.logger.info({ delayMs }, 'not ready; still serving until the shutdown delay ends');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        // stop() during the delay (an embedder or a test giving up on the grace) ends the wait at once.
        this.endDelay = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.endDelay = null;
    }
    this.logger.info({ graceMs }, 'shutting down');
    await Promise.all(this.started.map(({ module }) => module.drain?.(graceMs)));
    await this.stop();
  }

  /** Stops every started module, in reverse order of starting. */
  async stop(): Promise<void> {
    this.state = 'shutting down';
    this.endDelay?.();
    const started = this.started.reverse();
    this.started = [];
    for (const { module } of started) await module.stop();
  }
}
