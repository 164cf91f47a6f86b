/**
 * kas's observability listener (fastify): /metrics for Prometheus, /liveness (the process serves
 * HTTP) and /readiness (every listener is up and kas is not shutting down).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { listenFastify } from '../fastify-listen.js';
import type { KasMetrics } from './metrics.js';

export class ObservabilityServer {
  private readonly app: FastifyInstance;
  private readonly address: string;
  private ready = false;
  boundAddress = '';

  constructor(address: string, metrics: KasMetrics, readinessChecks: Array<() => string | null> = []) {
    this.address = address;
    this.app = Fastify({ logger: false });
    this.app.get('/metrics', async (_req, reply) => {
      reply.header('Content-Type', metrics.registry.contentType);
      return metrics.registry.metrics();
    });
    this.app.get('/liveness', async () => ({ status: 'ok' }));
    this.app.get('/readiness', async (_req, reply) => {
      const problems = this.ready ? readinessChecks.map((c) => c()).filter((p): p is string => p !== null) : ['starting or shutting down'];
      if (problems.length > 0) {
        reply.code(503);
        return { status: 'not ready', problems };
      }
      return { status: 'ok' };
    });
  }

  setReady(ready: boolean): void {
    this.ready = ready;
  }

  async start(): Promise<string> {
    this.boundAddress = await listenFastify(this.app, this.address);
    return this.boundAddress;
  }

  async stop(): Promise<void> {
    await this.app.close();
  }
}
