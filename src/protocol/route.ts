/**
 * Routing between kas replicas on the wire: a replica that does not hold an agent opens a `route`
 * stream on a kas-to-kas session to a replica that does. The OPEN head names the agent and carries
 * the head of the stream to open on that agent's session; after that the route stream is the agent
 * stream, byte for byte (REPLY head, data, END, RESET relayed both ways). docs/protocol.md
 * ("Routing between kas replicas") is the normative description.
 */
import { TunnelError } from './errors.js';
import type { Head } from './frames.js';

export const ROUTE_STREAM = 'route';

export interface RouteHead {
  agentId: number;
  /** The head of the stream to open on the agent's session. */
  head: Head;
}

export function encodeRouteHead(r: RouteHead): Head {
  return { t: ROUTE_STREAM, agent_id: r.agentId, head: r.head };
}

export function decodeRouteHead(head: Head): RouteHead {
  const agentId = head.agent_id;
  const inner = head.head;
  if (head.t !== ROUTE_STREAM) throw new TunnelError('PROTOCOL_ERROR', `invalid route head: stream type must be "${ROUTE_STREAM}"`);
  if (typeof agentId !== 'number' || !Number.isSafeInteger(agentId) || agentId <= 0) throw new TunnelError('PROTOCOL_ERROR', 'invalid route head: agent_id must be a positive integer');
  if (typeof inner !== 'object' || inner === null || Array.isArray(inner) || inner instanceof Uint8Array) throw new TunnelError('PROTOCOL_ERROR', 'invalid route head: head must be a map');
  return { agentId, head: inner };
}
