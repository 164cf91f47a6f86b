/**
 * kas's side of `agent_events` streams: reads the batches agentk sends, checks every record
 * (src/protocol/cluster-events.ts) and publishes the good ones for the agent. A batch is taken
 * whole or not at all; anything malformed or over a cap resets the stream with PROTOCOL_ERROR (the
 * session and the agent's other streams go on), and at most one batch of a stream is ever held.
 * Past the agent's rate (`agent.events.rate_limit`, `burst`) records are dropped and counted.
 */
import { decodeAgentEventsHead, decodeEventBatch, decodeEventRecord, EventBatchReader, type EventRecord } from '../../protocol/cluster-events.js';
import { TunnelError } from '../../protocol/errors.js';
import type { TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentConnection } from '../tunnel/agent-registry.js';
import type { ClusterEventsMetrics } from './metrics.js';
import type { ClusterEventsService } from './service.js';

/** Takes one token of an agent's rate, or says there is none. */
export type AgentRate = (agentId: number) => boolean;

export interface AgentEventStreamDeps {
  events: ClusterEventsService;
  metrics: ClusterEventsMetrics;
  allow: AgentRate;
}

function publishRecord(deps: AgentEventStreamDeps, agentId: number, r: EventRecord): void {
  const o = r.object;
  deps.events.publish(agentId, {
    source: 'kubernetes',
    type: r.type,
    reason: r.reason,
    message: r.message,
    object: { ...(o.apiVersion && { apiVersion: o.apiVersion }), kind: o.kind, ...(o.namespace && { namespace: o.namespace }), name: o.name },
    count: r.count,
    firstTime: r.firstTime,
    lastTime: r.lastTime,
    ...(r.reporter && { reporter: r.reporter }),
  });
}

export function serveAgentEvents(deps: AgentEventStreamDeps, stream: TunnelStream, connection: AgentConnection, logger: Logger): void {
  const agentId = connection.identity.agentId;
  const refuse = (err: unknown): void => {
    const message = err instanceof TunnelError ? err.message : 'invalid cluster event stream';
    deps.metrics.dropped.inc({ reason: 'invalid' });
    logger.warn({ streamId: stream.id, reason: message }, 'agent sent invalid cluster events: stream reset');
    stream.reset('PROTOCOL_ERROR', message);
  };
  try {
    decodeAgentEventsHead(stream.peerHead ?? {});
  } catch (err) {
    refuse(err);
    return;
  }
  stream.reply({});
  const reader = new EventBatchReader();
  stream.on('data', (chunk: Buffer) => {
    if (stream.destroyed) return;
    try {
      for (const body of reader.push(chunk)) {
        const records = decodeEventBatch(body).map(decodeEventRecord);
        for (const r of records) {
          if (deps.allow(agentId)) publishRecord(deps, agentId, r);
          else deps.metrics.dropped.inc({ reason: 'rate_limit' });
        }
      }
    } catch (err) {
      refuse(err);
    }
  });
  stream.on('end', () => {
    if (!reader.atBoundary) refuse(new TunnelError('PROTOCOL_ERROR', 'invalid cluster event stream: the data ended inside a batch'));
    else stream.end();
  });
}
