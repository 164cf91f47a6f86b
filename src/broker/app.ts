/**
 * kas's composition root: builds the features from the configuration in an explicit list, starts
 * them in order and stops them in reverse. Standalone mode only for now (no `gitlab` section).
 */
import { BufferBudget } from '../protocol/flow.js';
import { createLogger, type Logger } from '../shared/logger.js';
import type { AgentAuthenticator, ProxyAuthenticator } from './auth/types.js';
import type { KasConfig } from './configuration/schema.js';
import { KubernetesApiProxy } from './kubernetes-api/proxy.js';
import { KasMetrics } from './observability/metrics.js';
import { ObservabilityServer } from './observability/observability-server.js';
import { StandaloneAuth } from './standalone/standalone-auth.js';
import { AgentListener } from './tunnel/agent-listener.js';
import { AgentRegistry } from './tunnel/agent-registry.js';

export type ListenerName = 'agent' | 'kubernetes_api' | 'observability';

interface Module {
  name: ListenerName;
  start(): Promise<string>;
  /** Stop taking new work and let what runs finish, at most graceMs. */
  drain?(graceMs: number): Promise<void>;
  stop(): Promise<void>;
}

export interface KasAppOptions {
  config: KasConfig;
  logger?: Logger;
}

export class KasApp {
  readonly config: KasConfig;
  readonly logger: Logger;
  readonly metrics = new KasMetrics();
  readonly registry = new AgentRegistry();
  /** Bound "host:port" of each listener, once started. */
  readonly addresses: Partial<Record<ListenerName, string>> = {};
  private readonly observability: ObservabilityServer;
  private readonly modules: Module[];
  private started: Module[] = [];
  private shuttingDown = false;

  constructor(options: KasAppOptions) {
    const { config } = options;
    this.config = config;
    this.logger = options.logger ?? createLogger({ name: 'kas', level: config.observability.logging.level });
    const auth = new StandaloneAuth(config.standalone);
    const agentAuth: AgentAuthenticator = auth;
    const proxyAuth: ProxyAuthenticator = auth;
    const processBudget = new BufferBudget(config.agent.tunnel.max_process_buffer);
    this.registry.onChange(() => this.metrics.connectedAgents.set(this.registry.agentCount));
    this.metrics.bufferedBytesSource = () => processBudget.used;

    this.observability = new ObservabilityServer(config.observability.listen.address, this.metrics, [() => (this.shuttingDown ? 'shutting down' : null)]);
    const agentListener = new AgentListener({ listen: config.agent.listen, tunnel: config.agent.tunnel, authenticator: agentAuth, registry: this.registry, metrics: this.metrics, logger: this.logger.child({ module: 'agent_listener' }), processBudget });
    const proxy = new KubernetesApiProxy({ config: config.agent.kubernetes_api, authenticator: proxyAuth, registry: this.registry, metrics: this.metrics, logger: this.logger.child({ module: 'kubernetes_api' }) });
    this.modules = [
      { name: 'observability', start: () => this.observability.start(), stop: () => this.observability.stop() },
      { name: 'agent', start: () => agentListener.start(), drain: (g) => agentListener.drain(g), stop: () => agentListener.stop() },
      { name: 'kubernetes_api', start: () => proxy.start(), drain: (g) => proxy.drain(g), stop: () => proxy.stop() },
    ];
  }

  async start(): Promise<void> {
    for (const m of this.modules) {
      const address = await m.start();
      this.started.push(m);
      this.addresses[m.name] = address;
      this.logger.info({ listener: m.name, address }, 'listening');
    }
    this.observability.setReady(true);
  }

  /** Graceful shutdown: not ready, drain agents and in-flight requests (at most graceMs), then stop. */
  async shutdown(graceMs = this.config.agent.tunnel.drain_grace): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.logger.info({ graceMs }, 'shutting down');
    await Promise.all(this.started.map((m) => m.drain?.(graceMs)));
    await this.stop();
  }

  /** Stops every module at once, in reverse order of starting. */
  async stop(): Promise<void> {
    this.shuttingDown = true;
    const started = this.started.reverse();
    this.started = [];
    for (const m of started) await m.stop();
  }
}
