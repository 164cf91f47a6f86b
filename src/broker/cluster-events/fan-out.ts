/**
 * How an event reaches every replica: the event's JSON (without its id) goes in, and `deliver`
 * runs with the id it was given on every replica (this one included). For one replica that is a
 * counter in memory; with Redis (redis-fan-out.ts) one script gives the id, appends the event to the
 * agent's history list and publishes it.
 */

/** An event as it travels between replicas: its id, merge key, last occurrence and JSON (id included). */
export interface SharedEvent {
  agentId: number;
  id: number;
  key: string;
  lastTimeMs: number;
  json: string;
}

export type DeliverEvent = (e: SharedEvent) => void;

export interface EventFanOut {
  /** Shares an event; `body` is its JSON object text without the id, starting with "{". */
  publish(agentId: number, key: string, lastTimeMs: number, body: string): void;
  /** What other replicas stored for an agent, oldest first ([] for one replica). */
  history(agentId: number): Promise<SharedEvent[]>;
  start(deliver: DeliverEvent): Promise<void>;
  stop(): Promise<void>;
}

/** `{"id":"<id>",...}` from an id and a body `{...}`. */
export function withId(id: number, body: string): string {
  return body === '{}' ? `{"id":"${id}"}` : `{"id":"${id}",${body.slice(1)}`;
}

/** One replica: ids from a counter, delivered at once. */
export class MemoryFanOut implements EventFanOut {
  private seq = 0;
  private deliver: DeliverEvent | null = null;

  publish(agentId: number, key: string, lastTimeMs: number, body: string): void {
    const id = ++this.seq;
    this.deliver?.({ agentId, id, key, lastTimeMs, json: withId(id, body) });
  }

  history(): Promise<SharedEvent[]> {
    return Promise.resolve([]);
  }

  start(deliver: DeliverEvent): Promise<void> {
    this.deliver = deliver;
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.deliver = null;
    return Promise.resolve();
  }
}
