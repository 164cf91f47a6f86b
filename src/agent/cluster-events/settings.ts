/**
 * agentk's settings of cluster events, from the `observability.events` section kas sends (kas
 * validated it; absent keys take their defaults here). docs/agent-configuration.md describes them.
 */
import type { AgentConfigDocument, AgentEventsSection } from '../../protocol/agent-config.js';
import type { EventType } from '../../protocol/cluster-events.js';
import { parseLabelSelector, type LabelRequirement } from '../../shared/label-selector.js';

export interface EventSettings {
  /** Event types sent; empty: none (the feature watches nothing). */
  types: ReadonlySet<EventType>;
  /** Namespaces followed; empty: every namespace the agent can read (one cluster-wide watch). */
  namespaces: readonly string[];
  /** The selector's text ('' for none) and its requirements on the involved object's labels. */
  labelSelector: string;
  requirements: readonly LabelRequirement[];
  /** Events per second sent at most, and the burst. */
  rate: number;
  burst: number;
}

export const DEFAULT_EVENT_TYPES: readonly EventType[] = ['Warning'];
export const DEFAULT_EVENT_RATE = 10;
export const DEFAULT_EVENT_BURST = 100;

/** The settings of a configuration (`undefined`: none received yet, the defaults). Throws on a selector kas should have refused. */
export function eventSettings(observability: AgentConfigDocument['observability'] | undefined): EventSettings {
  const s: AgentEventsSection = observability?.events ?? {};
  const labelSelector = s.label_selector ?? '';
  return {
    types: new Set(s.types ?? DEFAULT_EVENT_TYPES),
    namespaces: [...new Set(s.namespaces ?? [])].sort(),
    labelSelector,
    requirements: parseLabelSelector(labelSelector),
    rate: s.rate_limit ?? DEFAULT_EVENT_RATE,
    burst: s.burst ?? DEFAULT_EVENT_BURST,
  };
}
