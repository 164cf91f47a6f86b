/**
 * Agent registration, agent half: on every session to kas, and again every period (5 min), agentk
 * opens an `agent_info` stream and says who it is (src/protocol/agent-info.ts). The Kubernetes
 * version is asked of the API server again for each report, so an upgrade of the cluster shows. A
 * kas that does not serve `agent_info` (an older one) is told nothing: one line at info, and agentk
 * goes on as before.
 */
import { Counter } from 'prom-client';
import { AGENT_INFO_STREAM, decodeAgentInfoReply, encodeAgentInfo, encodeAgentInfoHead, type AgentInfo } from '../../protocol/agent-info.js';
import { TunnelError } from '../../protocol/errors.js';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import { BUILD_INFO } from '../../shared/version.js';
import type { AgentkModule } from '../module.js';
import type { AgentMetrics } from '../observability/metrics.js';
import type { KasSession, KasStreams } from '../tunnel/kas-streams.js';
import { goArchitecture } from './telemetry.js';

export const DEFAULT_REGISTRATION_PERIOD_MS = 5 * 60_000;
const REPLY_TIMEOUT_MS = 30_000;

export interface AgentRegistrationOptions {
  kas: KasStreams;
  logger: Logger;
  metrics: AgentMetrics;
  pod: { name: string; namespace: string; uid: string };
  /** Extra telemetry, already within the protocol's limits (telemetryFromEnv). */
  telemetry: Record<string, string>;
  /** Asks the API server for its version ('' when it cannot be had). */
  kubernetesVersion: () => Promise<string>;
  /** How often to register again on every session, ms (default 5 min). */
  periodMs?: number;
}

/** Registrations sent, by result: ok (kas accepted), refused (kas answered registered: false), error. */
class RegistrationMetrics {
  readonly registrations: Counter<'result'>;

  constructor(metrics: AgentMetrics) {
    this.registrations = new Counter({ name: 'agentk_registrations_total', help: 'Registrations sent to kas (agent_info streams), by result (ok, refused, error).', labelNames: ['result'], registers: [metrics.registry] });
  }
}

export class AgentRegistration implements AgentkModule {
  readonly name = 'registration';
  private readonly o: AgentRegistrationOptions;
  private readonly metrics: RegistrationMetrics;
  private readonly inFlight = new Set<KasSession>();
  private readonly streams = new Set<TunnelStream>();
  private versionLookup: Promise<string> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private toldUnserved = false;
  private stopped = false;

  constructor(options: AgentRegistrationOptions) {
    this.o = options;
    this.metrics = new RegistrationMetrics(options.metrics);
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.unsubscribe = this.o.kas.onSession((s) => void this.register(s));
    this.timer = setInterval(() => {
      for (const s of this.o.kas.sessions) void this.register(s);
    }, this.o.periodMs ?? DEFAULT_REGISTRATION_PERIOD_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const stream of this.streams) stream.reset('CANCELLED', 'agentk is stopping');
    this.streams.clear();
  }

  /** What agentk says about itself now (asks the API server for its version). */
  async info(): Promise<AgentInfo> {
    const { pod, telemetry } = this.o;
    return {
      version: BUILD_INFO.version,
      commit: BUILD_INFO.commit,
      pod_namespace: pod.namespace,
      pod_name: pod.name,
      pod_uid: pod.uid,
      architecture: goArchitecture(),
      kubernetes_version: await this.kubernetesVersion(),
      extra_telemetry: telemetry,
    };
  }

  /** One look-up of the version at a time, shared by the sessions that register together. */
  private kubernetesVersion(): Promise<string> {
    this.versionLookup ??= this.o.kubernetesVersion()
      .catch(() => '')
      .finally(() => {
        this.versionLookup = null;
      });
    return this.versionLookup;
  }

  private async register(session: KasSession): Promise<void> {
    if (this.stopped || !session.usable) return;
    if (!session.features.has(AGENT_INFO_STREAM)) {
      if (!this.toldUnserved) {
        this.toldUnserved = true;
        this.o.logger.info({ connectionId: session.connectionId }, 'kas does not serve agent registration (an older kas): agentk does not register with it and works as before');
      }
      return;
    }
    // A registration still under way on this session is the report of this period too.
    if (this.inFlight.has(session)) return;
    this.inFlight.add(session);
    let stream: TunnelStream | null = null;
    let timer: NodeJS.Timeout | null = null;
    try {
      const info = await this.info();
      if (this.stopped || !session.usable) return;
      stream = session.open(encodeAgentInfoHead(), { data: encodeAgentInfo(info), end: true });
      this.streams.add(stream);
      const s = stream;
      timer = setTimeout(() => s.reset('CANCELLED', 'kas did not answer the registration in time'), REPLY_TIMEOUT_MS);
      const reply = decodeAgentInfoReply(await replyOf(s));
      // kas ends its direction with the reply: read it to the end so the stream closes.
      s.resume();
      if (reply.registered) {
        this.metrics.registrations.inc({ result: 'ok' });
        this.o.logger.debug({ connectionId: session.connectionId, kubernetesVersion: info.kubernetes_version }, 'registered with kas');
      } else {
        this.metrics.registrations.inc({ result: 'refused' });
        this.o.logger.warn({ connectionId: session.connectionId }, 'kas did not accept the registration');
      }
    } catch (err) {
      if (this.stopped || !session.usable) return;
      this.metrics.registrations.inc({ result: 'error' });
      if (err instanceof TunnelError && err.code === 'PROTOCOL_ERROR' && stream && !stream.destroyed) stream.reset('PROTOCOL_ERROR', err.message);
      this.o.logger.warn({ err, connectionId: session.connectionId }, 'could not register with kas; trying again at the next period');
    } finally {
      if (timer) clearTimeout(timer);
      if (stream) this.streams.delete(stream);
      this.inFlight.delete(session);
    }
  }
}
