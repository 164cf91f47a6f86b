/**
 * The observability listener: /metrics (Prometheus text), /liveness (the process serves HTTP) and
 * /readiness (at least one session to kas is open). One JSON log line with `listener` and
 * `address` is written once it listens, so scripts and tests can find a port 0 listener.
 */
import http from 'node:http';
import { LogFields, type Logger } from '../../shared/logger.js';
import type { AgentMetrics } from './metrics.js';
import { listenOn, type ListenAddress } from '../../shared/address.js';

export interface ObservabilityOptions {
  listen: ListenAddress;
  metrics: AgentMetrics;
  /** True when agentk can serve requests; asked on every /readiness. */
  ready: () => boolean;
  logger: Logger;
}

export class ObservabilityServer {
  private readonly options: ObservabilityOptions;
  private readonly server: http.Server;
  private boundAddress: string | null = null;

  constructor(options: ObservabilityOptions) {
    this.options = options;
    this.server = http.createServer((req, res) => {
      this.serve(req, res).catch((err: unknown) => {
        options.logger.error({ err }, 'observability request failed');
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    this.server.keepAliveTimeout = 5000;
    this.server.requestTimeout = 30_000;
  }

  /** The `host:port` actually bound; set once `start()` resolved. */
  get address(): string {
    if (this.boundAddress === null) throw new Error('the observability server is not listening');
    return this.boundAddress;
  }

  async start(): Promise<void> {
    this.boundAddress = await listenOn(this.server, this.options.listen);
    this.server.on('error', (err) => this.options.logger.error({ err }, 'observability listener failed'));
    this.options.logger.info({ [LogFields.listener]: 'observability', [LogFields.address]: this.boundAddress }, 'listening');
  }

  async stop(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    switch (path) {
      case '/metrics': {
        const registry = this.options.metrics.registry;
        const body = await registry.metrics();
        res.writeHead(200, { 'Content-Type': registry.contentType }).end(body);
        return;
      }
      case '/liveness':
        res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
        return;
      case '/readiness': {
        const ready = this.options.ready();
        res.writeHead(ready ? 200 : 503, { 'Content-Type': 'text/plain' }).end(ready ? 'ok\n' : 'no session to kas is open\n');
        return;
      }
      default:
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    }
  }
}
