/**
 * Agent registration, kas half: serves the `agent_info` streams agentk opens. The data is read up to
 * its limit (a larger one is reset at once, without reading the rest), checked as hostile input
 * (src/protocol/agent-info.ts), and only a valid registration is kept: on the connection (so it goes
 * with it), in the connection record other replicas read (Redis), and in GitLab mode as a
 * `register_agent_at_kas` event. Writes of an agent's records are coalesced, so an agent that
 * registers in a loop costs one write at a time.
 */
import { decodeAgentInfo, decodeAgentInfoHead, encodeAgentInfoReply, MAX_AGENT_INFO_BYTES } from '../../protocol/agent-info.js';
import { TunnelError } from '../../protocol/errors.js';
import { readBounded, type TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import type { RegisterAgentEvent } from '../gitlab/agent-events.js';
import type { ConnectionRecords } from '../replicas/replica-state.js';
import type { AgentConnection } from '../tunnel/agent-registry.js';
import type { RegistrationMetrics } from './metrics.js';

export const DEFAULT_READ_TIMEOUT_MS = 30_000;

export interface RegistrationServerDeps {
  records: Pick<ConnectionRecords, 'changed'>;
  /** GitLab mode: where registrations go as agent events; null in standalone mode. */
  events: { registerAgent(event: RegisterAgentEvent): void } | null;
  metrics: RegistrationMetrics;
  /** How long agentk may take to send its whole registration, ms. */
  readTimeoutMs?: number;
}

export class RegistrationServer {
  /** Agents whose records are being written, and whether another write is wanted after it. */
  private readonly writing = new Map<number, boolean>();

  constructor(private readonly deps: RegistrationServerDeps) {}

  handle(stream: TunnelStream, connection: AgentConnection, logger: Logger): void {
    const { metrics } = this.deps;
    try {
      decodeAgentInfoHead(stream.peerHead ?? {});
    } catch (err) {
      metrics.registrations.inc({ result: 'invalid' });
      logger.warn({ err, streamId: stream.id }, 'agent sent an invalid agent_info head');
      stream.reset('PROTOCOL_ERROR', (err as Error).message);
      return;
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      stream.reset('CANCELLED', 'agentk did not send its registration in time');
    }, this.deps.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS);
    timer.unref();
    readBounded(stream, MAX_AGENT_INFO_BYTES, 'agent_info document')
      .then((data) => {
        clearTimeout(timer);
        if (stream.destroyed) return;
        const info = decodeAgentInfo(data);
        connection.registration = { info, registeredAt: new Date() };
        const { agentId, projectId } = connection.identity;
        this.recordChanged(agentId);
        if (projectId !== null) {
          this.deps.events?.registerAgent({ project_id: projectId, agent_id: agentId, agent_version: info.version, architecture: info.architecture, kubernetes_version: info.kubernetes_version, extra_telemetry: info.extra_telemetry });
        }
        stream.reply(encodeAgentInfoReply({ registered: true }), { end: true });
        metrics.registrations.inc({ result: 'ok' });
        logger.debug({ agentId, architecture: info.architecture, kubernetesVersion: info.kubernetes_version, podName: info.pod_name }, 'agent registered');
      })
      .catch((err: unknown) => {
        clearTimeout(timer);
        if (err instanceof TunnelError && err.code === 'PROTOCOL_ERROR') {
          metrics.registrations.inc({ result: 'invalid' });
          logger.warn({ err, streamId: stream.id }, 'agent sent an invalid registration; nothing of it is kept');
          stream.reset('PROTOCOL_ERROR', err.message);
          return;
        }
        metrics.registrations.inc({ result: timedOut ? 'timeout' : 'lost' });
        if (timedOut) logger.warn({ streamId: stream.id }, 'agent did not send its registration in time');
        stream.reset('INTERNAL', 'kas could not take the registration');
      });
  }

  /** Writes the agent's records once now, and once more after that if they changed meanwhile. */
  private recordChanged(agentId: number): void {
    if (this.writing.has(agentId)) {
      this.writing.set(agentId, true);
      return;
    }
    this.writing.set(agentId, false);
    void this.deps.records.changed(agentId).finally(() => {
      const again = this.writing.get(agentId) === true;
      this.writing.delete(agentId);
      if (again) this.recordChanged(agentId);
    });
  }
}
