/**
 * The Kubernetes API proxy, agent half: serves `http` streams against this cluster's API server.
 * At start it asks the API server for its version (best effort) for the handshake; registration
 * asks again for each report (refreshVersion), so an upgrade of the cluster shows.
 */
import { HTTP_STREAM } from '../../protocol/http.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentkModule } from '../module.js';
import type { AgentMetrics } from '../observability/metrics.js';
import type { StreamHandlers } from '../tunnel/stream-handlers.js';
import { ApiServerClient, type ApiServerConfig } from './api-server.js';
import { ApiServerForwarder } from './api-server-forwarder.js';

export interface KubernetesApiOptions {
  apiServer: ApiServerConfig;
  handlers: StreamHandlers;
  metrics: AgentMetrics;
  logger: Logger;
  /** How often a token file is re-read at most, ms (default 60 s). */
  tokenRefreshMs?: number;
  /** The client to use (shared with the informers; its owner closes it). Default: one of the module's own. */
  client?: ApiServerClient;
  /** Deadline of the GET /version at start, ms. */
  versionTimeoutMs?: number;
}

export class KubernetesApiModule implements AgentkModule {
  readonly name = 'kubernetes-api';
  /** The API server's gitVersion, '' until known or when it could not be had. */
  kubernetesVersion = '';
  private readonly options: KubernetesApiOptions;
  private readonly client: ApiServerClient;
  private readonly ownsClient: boolean;
  private readonly forwarder: ApiServerForwarder;

  constructor(options: KubernetesApiOptions) {
    this.options = options;
    this.ownsClient = options.client === undefined;
    this.client = options.client ?? new ApiServerClient(options.apiServer, { logger: options.logger, tokenRefreshMs: options.tokenRefreshMs, metrics: options.metrics });
    this.forwarder = new ApiServerForwarder(this.client, options.metrics);
    options.metrics.apiBufferedSource = () => this.forwarder.bufferedBytes();
    options.handlers.register(HTTP_STREAM, (stream, logger) => this.forwarder.handle(stream, logger));
  }

  async start(): Promise<void> {
    const { apiServer, logger } = this.options;
    this.kubernetesVersion = await this.client.version(this.options.versionTimeoutMs ?? 5000);
    if (this.kubernetesVersion) logger.info({ apiServer: apiServer.url.origin, source: apiServer.source, kubernetesVersion: this.kubernetesVersion }, 'Kubernetes API server found');
    else logger.warn({ apiServer: apiServer.url.origin, source: apiServer.source }, 'the Kubernetes API server did not tell its version; serving requests anyway');
  }

  /** Asks the API server for its version again; keeps the last known one when it does not answer. */
  async refreshVersion(): Promise<string> {
    const version = await this.client.version(this.options.versionTimeoutMs ?? 5000);
    if (version && version !== this.kubernetesVersion) {
      if (this.kubernetesVersion) this.options.logger.info({ kubernetesVersion: version, previousVersion: this.kubernetesVersion }, 'the Kubernetes API server reports a new version');
      this.kubernetesVersion = version;
    }
    return this.kubernetesVersion;
  }

  async stop(): Promise<void> {
    this.forwarder.close();
    if (this.ownsClient) this.client.close();
  }
}
