/**
 * kas's observability listener (fastify): /metrics for Prometheus, /liveness (the process serves
 * HTTP) and /readiness (every module is up, none reports a problem, and kas is not shutting down).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { listenFastify } from '../fastify-listen.js';

export class ObservabilityServer {
  private readonly app: FastifyInstance;
  private readonly address: string;
  boundAddress = '';

  /** `readinessProblems` is asked at each /readiness request; [] means ready. */
  constructor(address: string, registry: Registry, readinessProblems: () => string[]) {
    this.address = address;
    this.app = Fastify({ logger: false });
    this.app.get('/metrics', async (_req, reply) => {
      reply.header('Content-Type', registry.contentType);
      return registry.metrics();
    });
    this.app.get('/liveness', async () => ({ status: 'ok' }));
    this.app.get('/readiness', async (_req, reply) => {
      const problems = readinessProblems();
      if (problems.length > 0) {
        reply.code(503);
        return { status: 'not ready', problems };
      }
      return { status: 'ok' };
    });
  }

  async start(): Promise<string> {
    this.boundAddress = await listenFastify(this.app, this.address);
    return this.boundAddress;
  }

  async stop(): Promise<void> {
    await this.app.close();
  }
}
