/**
 * The agents connected to this kas process: which sessions each agent has, and a bounded wait for
 * an agent that is not connected yet. New streams go to the session of the agent with the fewest
 * open streams, so a pool of connections shares the load.
 */
import type { Session } from '../../protocol/session.js';
import type { AgentIdentity } from '../auth/types.js';
import { KeyedWaiters } from '../keyed-waiters.js';

/** Metadata agentk sends in its handshake. */
export interface AgentMeta {
  version: string;
  commit: string;
  podNamespace: string;
  podName: string;
  kubernetesVersion: string;
  features: string[];
}

export interface AgentConnection {
  readonly connectionId: string;
  readonly identity: AgentIdentity;
  readonly session: Session;
  readonly connectedAt: Date;
  readonly meta: AgentMeta;
  /**
   * The agent's token, for calls kas makes to GitLab on the agent's behalf (GitOps: project_info).
   * A function, so that logging a connection never prints it. Absent in tests that build connections.
   */
  readonly agentToken?: () => string;
}

export class AgentRegistry {
  private readonly byAgent = new Map<number, Set<AgentConnection>>();
  private readonly waiters = new KeyedWaiters<number, Session>();
  private readonly listeners = new Set<(agentId: number) => void>();

  /** Adds a connection (after its handshake); returns the function that removes it. */
  register(conn: AgentConnection): () => void {
    const id = conn.identity.agentId;
    let set = this.byAgent.get(id);
    if (!set) {
      set = new Set();
      this.byAgent.set(id, set);
    }
    set.add(conn);
    this.wake(id);
    for (const l of this.listeners) l(id);
    return () => {
      const s = this.byAgent.get(id);
      if (!s) return;
      s.delete(conn);
      if (s.size === 0) this.byAgent.delete(id);
      for (const l of this.listeners) l(id);
    };
  }

  /** Called whenever an agent's set of connections changes. */
  onChange(listener: (agentId: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A session of the agent that accepts new streams (the least loaded), or null. */
  pick(agentId: number, exclude?: ReadonlySet<Session>): Session | null {
    const set = this.byAgent.get(agentId);
    if (!set) return null;
    let best: Session | null = null;
    for (const c of set) {
      const s = c.session;
      if (!s.acceptsStreams || s.state !== 'open' || exclude?.has(s)) continue;
      if (!best || s.streamCount < best.streamCount) best = s;
    }
    return best;
  }

  /**
   * A session of the agent, waiting up to `timeoutMs` for one to connect. Resolves null on timeout
   * or when `signal` aborts (the client went away).
   */
  waitFor(agentId: number, timeoutMs: number, signal?: AbortSignal, exclude?: ReadonlySet<Session>): Promise<Session | null> {
    const now = this.pick(agentId, exclude);
    if (now || timeoutMs <= 0 || signal?.aborted) return Promise.resolve(now);
    return this.waiters.wait(agentId, timeoutMs, signal, (session) => !exclude?.has(session));
  }

  /** Re-checks waiters of an agent, e.g. when one of its sessions finished its handshake. */
  wake(agentId: number): void {
    this.waiters.offer(agentId, () => this.pick(agentId));
  }

  connections(agentId?: number): AgentConnection[] {
    if (agentId !== undefined) return [...(this.byAgent.get(agentId) ?? [])];
    return [...this.byAgent.values()].flatMap((s) => [...s]);
  }

  get agentCount(): number {
    return this.byAgent.size;
  }

  get connectionCount(): number {
    let n = 0;
    for (const s of this.byAgent.values()) n += s.size;
    return n;
  }
}
