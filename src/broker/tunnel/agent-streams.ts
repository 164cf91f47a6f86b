/**
 * The streams agentk opens towards kas (registration, cluster events, health, GitOps), routed to the
 * module that serves them by the `t` field of the stream's head. Modules register their types while
 * they are created (`ctx.services.get(AGENT_STREAMS).register(...)`); the registered types are the
 * `features` kas announces in its WELCOME, so an agentk never opens a type this kas does not serve.
 * A stream of an unknown type, or one opened before its session registered, is reset with
 * PROTOCOL_ERROR and the session goes on.
 */
import type { TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import { serviceKey } from '../services.js';
import type { AgentConnection } from './agent-registry.js';

/** Serves one stream agentk opened. Must not throw; failures become a reply or a coded reset. */
export type AgentStreamHandler = (stream: TunnelStream, connection: AgentConnection, logger: Logger) => void;

export class AgentStreams {
  private readonly handlers = new Map<string, AgentStreamHandler>();
  private sealed = false;

  /** Registers the handler of a stream type; only while kas is being created. */
  register(type: string, handler: AgentStreamHandler): void {
    if (this.sealed) throw new Error(`stream type ${JSON.stringify(type)} registered after kas started: register it in the module's create`);
    if (this.handlers.has(type)) throw new Error(`a handler for agent stream type ${JSON.stringify(type)} is already registered`);
    this.handlers.set(type, handler);
  }

  /** The stream types served, in registration order: WELCOME's `features`. */
  get types(): string[] {
    this.sealed = true;
    return [...this.handlers.keys()];
  }

  dispatch(stream: TunnelStream, connection: AgentConnection, logger: Logger): void {
    const type = stream.peerHead?.t;
    const handler = typeof type === 'string' ? this.handlers.get(type) : undefined;
    if (!handler) {
      const shown = typeof type === 'string' ? type.slice(0, 64) : null;
      logger.warn({ streamId: stream.id, type: shown }, 'agent opened a stream of a type kas does not serve');
      stream.reset('PROTOCOL_ERROR', `kas serves no stream type ${JSON.stringify(shown)}; it serves ${this.types.join(', ') || 'none'}`);
      return;
    }
    try {
      handler(stream, connection, logger);
    } catch (err) {
      logger.error({ err, streamId: stream.id, type }, 'agent stream handler failed');
      stream.reset('INTERNAL', 'kas failed to serve the stream');
    }
  }
}

/** The registry of agent-opened stream types, offered by the agent_listener module. */
export const AGENT_STREAMS = serviceKey<AgentStreams>('agent_streams');
