/**
 * Agent connectivity notifications: each connection an agent opens or loses becomes an event of
 * source `kas` in the agent's ring (served with its cluster events), from the registry's
 * connectivity hook. A drain is Normal (kas moved the agent on purpose, it reconnects elsewhere);
 * any other end is a Warning.
 */
import type { AgentRegistry, ConnectivityChange, DisconnectReason } from '../tunnel/agent-registry.js';
import type { ClusterEventsService } from './service.js';

const REASON_TEXT: Record<DisconnectReason, string> = {
  drain: 'kas drained the connection (maximum connection age or shutdown); the agent reconnects',
  keepalive_timeout: 'the agent did not answer keepalive pings',
  token_revoked: 'the agent token is no longer valid',
  closed_by_agent: 'the agent closed the connection',
  connection_lost: 'the network connection was lost',
  error: 'the connection failed',
};

export function connectivityEvent(change: ConnectivityChange, instanceName: string): Parameters<ClusterEventsService['publish']>[1] {
  const c = change.connection;
  const object = c.meta.podName ? { apiVersion: 'v1', kind: 'Pod', ...(c.meta.podNamespace && { namespace: c.meta.podNamespace }), name: c.meta.podName } : undefined;
  if (change.kind === 'connected') {
    return {
      source: 'kas',
      type: 'Normal',
      reason: 'AgentConnected',
      message: `agentk ${c.meta.version || '(unknown version)'} connected to kas ${instanceName} (connection ${c.connectionId})`,
      ...(object && { object }),
    };
  }
  const detail = change.detail ? `: ${change.detail}` : '';
  return {
    source: 'kas',
    type: change.reason === 'drain' ? 'Normal' : 'Warning',
    reason: 'AgentDisconnected',
    message: `connection ${c.connectionId} to kas ${instanceName} ended (${change.reason}): ${REASON_TEXT[change.reason]}${detail}`,
    ...(object && { object }),
  };
}

/** Publishes the registry's connectivity changes as events; returns the function that stops it. */
export function followConnectivity(registry: AgentRegistry, events: ClusterEventsService, instanceName: string): () => void {
  return registry.onConnectivity((change) => events.publish(change.connection.identity.agentId, connectivityEvent(change, instanceName)));
}
