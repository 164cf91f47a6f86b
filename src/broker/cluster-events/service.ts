/**
 * What the cluster events module offers other kas modules: `publish` adds an event to an agent's
 * ring (and, with replicas, every replica's), where the API serves it with the events agentk
 * reports. GitOps and the agent listener's connectivity notifications use it.
 */
import type { EventType } from '../../protocol/cluster-events.js';
import { serviceKey } from '../services.js';

/** Who produced an event: the cluster (through agentk), kas itself, or GitOps. */
export type ClusterEventSource = 'kubernetes' | 'kas' | 'gitops';

/** The object an event is about. */
export interface ClusterEventObject {
  apiVersion?: string;
  kind: string;
  namespace?: string;
  name: string;
}

/** An event as a module hands it over; kas fills in what is missing (count 1, times now). */
export interface ClusterEventInput {
  source: ClusterEventSource;
  type: EventType;
  reason: string;
  message: string;
  object?: ClusterEventObject;
  count?: number;
  /** RFC 3339 times. */
  firstTime?: string;
  lastTime?: string;
  /** Who reported it (a Kubernetes event's component). */
  reporter?: string;
}

/** An event as the API serves it. `id` grows with every event kas stores (across all agents and replicas). */
export interface ClusterEvent {
  id: string;
  source: ClusterEventSource;
  type: EventType;
  reason: string;
  message: string;
  object?: ClusterEventObject;
  count: number;
  firstTime: string;
  lastTime: string;
  reporter?: string;
  /** When kas received it (RFC 3339). */
  receivedAt: string;
}

/** Adds events to agents' rings. Safe to call from any module at any time after kas was created. */
export interface ClusterEventsService {
  publish(agentId: number, event: ClusterEventInput): void;
}

export const CLUSTER_EVENTS = serviceKey<ClusterEventsService>('cluster_events');
