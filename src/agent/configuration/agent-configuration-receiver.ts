/**
 * The agent configuration feature, agent half: serves the `agent_config` streams kas opens with each
 * new configuration (kas reads, validates and polls the file; agentk only applies the result) and
 * puts it in force without reconnecting, by handing each section to the modules that subscribed to
 * it (`subscribe(section, listener)`, latest value first). The log level is one such subscriber
 * (observability/log-level.ts).
 */
import {
  AGENT_CONFIG_STREAM,
  MAX_AGENT_CONFIG_BYTES,
  decodeAgentConfigData,
  decodeAgentConfigHead,
  encodeAgentConfigReply,
  type AgentConfigDocument,
  type AgentConfigHead,
} from '../../protocol/agent-config.js';
import { TunnelError } from '../../protocol/errors.js';
import { readBounded, type TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import { SectionFanOut, type SectionListener } from '../../shared/section-fan-out.js';
import type { AgentkModule } from '../module.js';
import type { StreamHandlers } from '../tunnel/stream-handlers.js';

export interface AgentConfigurationOptions {
  handlers: StreamHandlers;
  /**
   * agentk's root logger: its level is what the configuration changes, and every logger made with
   * `child()` from it follows. Its level at construction is the default.
   */
  rootLogger: Logger;
  /** The module's own logger. */
  logger: Logger;
  /** Where the configurations received are put in force, section by section. */
  sections: AgentConfigSectionsHub;
}

/** The sections of the agent configuration in force, for the modules that act on them. */
export interface AgentConfigSections {
  /**
   * Calls `listener` at once with the section in force (undefined before kas sent a configuration
   * with it), then whenever it changes. Returns the function that unsubscribes.
   */
  subscribe<S extends keyof AgentConfigDocument & string>(section: S, listener: SectionListener<AgentConfigDocument[S], void>): () => void;
}

/** The sections of the configuration in force: modules subscribe, the receiver publishes. */
export class AgentConfigSectionsHub implements AgentConfigSections {
  private readonly fan: SectionFanOut<AgentConfigDocument>;

  constructor(logger: Logger) {
    this.fan = new SectionFanOut((err, section) => logger.error({ err, section }, 'a subscriber of the agent configuration failed'));
  }

  subscribe<S extends keyof AgentConfigDocument & string>(section: S, listener: SectionListener<AgentConfigDocument[S], void>): () => void {
    const off = this.fan.subscribe(section, listener);
    if (this.fan.current(undefined) === undefined) listener(undefined, undefined);
    return off;
  }

  publish(document: AgentConfigDocument): void {
    this.fan.publish(undefined, document);
  }
}

/** What is in force, for tests and diagnostics. */
export interface AppliedAgentConfig {
  /** The version kas named (commit id or content hash); null for the empty configuration of a missing file. */
  commit: string | null;
  document: AgentConfigDocument;
  logLevel: string;
}

export class AgentConfigurationReceiver implements AgentkModule {
  readonly name = 'configuration';
  private readonly options: AgentConfigurationOptions;
  private current: AppliedAgentConfig | null = null;
  private stopped = false;

  constructor(options: AgentConfigurationOptions) {
    this.options = options;
    options.handlers.register(AGENT_CONFIG_STREAM, (stream, logger) => this.handle(stream, logger));
  }

  /** The configuration in force; null until kas sent one. */
  get applied(): AppliedAgentConfig | null {
    return this.current;
  }

  async start(): Promise<void> {
    this.stopped = false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }

  private handle(stream: TunnelStream, logger: Logger): void {
    let head: AgentConfigHead;
    try {
      head = decodeAgentConfigHead(stream.peerHead!);
    } catch (err) {
      logger.warn({ err, streamId: stream.id }, 'kas sent an invalid agent_config head');
      stream.reset('PROTOCOL_ERROR', (err as Error).message);
      return;
    }
    readBounded(stream, MAX_AGENT_CONFIG_BYTES, 'configuration').then(
      (data) => {
        if (stream.destroyed) return;
        let reply: { applied: boolean; error?: string };
        try {
          if (this.stopped) throw new Error('agentk is stopping');
          this.apply(head.commit, decodeAgentConfigData(data));
          reply = { applied: true };
        } catch (err) {
          this.options.logger.warn({ err, commit: head.commit }, 'could not apply the agent configuration from kas; the previous one stays in force');
          reply = { applied: false, error: (err as Error).message };
        }
        stream.reply(encodeAgentConfigReply(reply), { end: true });
      },
      (err: unknown) => {
        if (err instanceof TunnelError && err.code === 'PROTOCOL_ERROR' && !stream.destroyed) {
          this.options.logger.warn({ err }, 'kas sent an agent configuration agentk refuses');
          stream.reset('PROTOCOL_ERROR', err.message);
        }
      },
    );
  }

  /** Puts a configuration in force. Several sessions bring the same one: applying it again is harmless. */
  private apply(commit: string | null, document: AgentConfigDocument): void {
    const { rootLogger, logger } = this.options;
    const previous = this.current;
    const previousLogLevel = rootLogger.level;
    // Said where it shows: a switch to warn or error must not hide the line that announces it.
    const sayer = logger.isLevelEnabled('info') ? logger.child({}, { level: 'info' }) : logger;
    this.options.sections.publish(document);
    const level = rootLogger.level;
    this.current = { commit, document, logLevel: level };
    if (previous?.commit !== commit || previous.logLevel !== level) sayer.info({ commit, logLevel: level, previousLogLevel }, 'agent configuration applied');
  }
}
