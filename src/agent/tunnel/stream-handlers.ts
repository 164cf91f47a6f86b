/**
 * Routes the streams kas opens to the feature that serves them, by the `t` (type) field of the
 * stream's head. Features register at wiring time; the registered types are the `features` agentk
 * announces in its handshake. A stream of a type nobody serves is reset with PROTOCOL_ERROR.
 */
import type { TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentMetrics } from '../observability/metrics.js';

/** Serves one stream. Must not throw; failures become a reply or a coded reset of the stream. */
export type StreamHandler = (stream: TunnelStream, logger: Logger) => void;

export class StreamHandlers {
  private readonly handlers = new Map<string, StreamHandler>();
  private readonly metrics: AgentMetrics;

  constructor(metrics: AgentMetrics) {
    this.metrics = metrics;
  }

  register(type: string, handler: StreamHandler): void {
    if (this.handlers.has(type)) throw new Error(`a handler for stream type ${JSON.stringify(type)} is already registered`);
    this.handlers.set(type, handler);
  }

  /** The stream types served, in registration order: the handshake's feature list. */
  get types(): string[] {
    return [...this.handlers.keys()];
  }

  dispatch(stream: TunnelStream, logger: Logger): void {
    const type = stream.peerHead?.t;
    const handler = typeof type === 'string' ? this.handlers.get(type) : undefined;
    if (!handler) {
      logger.warn({ streamId: stream.id, type: typeof type === 'string' ? type.slice(0, 64) : null }, 'kas opened a stream of a type agentk does not serve');
      this.metrics.streamsServed.inc({ outcome: 'unknown_type' });
      stream.reset('PROTOCOL_ERROR', `agentk serves no stream type ${JSON.stringify(typeof type === 'string' ? type.slice(0, 64) : type ?? null)}; it serves ${this.types.join(', ') || 'none'}`);
      return;
    }
    try {
      handler(stream, logger);
    } catch (err) {
      logger.error({ err, streamId: stream.id }, 'stream handler failed');
      stream.reset('INTERNAL', 'agentk failed to serve the stream');
    }
  }
}
