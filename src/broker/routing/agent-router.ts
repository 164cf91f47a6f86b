/**
 * Finds a way to an agent for one request: a session of the agent on this replica if there is one,
 * else (with Redis) a replica that holds the agent, reached through a `route` stream on a kas-to-kas
 * session. Waits up to the agent wait timeout for the agent to appear anywhere, woken by local
 * registrations and by other replicas' announcements (pub/sub), with a slow poll as a safety net.
 */
import type { Head } from '../../protocol/frames.js';
import { encodeRouteHead } from '../../protocol/route.js';
import type { Session } from '../../protocol/session.js';
import type { TunnelStream } from '../../protocol/stream.js';
import type { ProxyMetrics } from '../kubernetes-api/metrics.js';
import type { AgentRegistry } from '../tunnel/agent-registry.js';
import type { PeerPool } from './peer-pool.js';
import type { AgentPresence } from '../replicas/replica-state.js';

export interface OpenedStream {
  stream: TunnelStream;
  /** The session the stream runs on: to exclude it when retrying elsewhere. */
  via: Session;
}

export interface OpenOptions {
  end: boolean;
  timeoutMs: number;
  /** The request's cancellation: `signal` is asked for only when the router must wait (a Cancellation makes it then). */
  cancel: CancelSource;
  /** Sessions not to use (they refused this request already). */
  tried: ReadonlySet<Session>;
}

/** Tells that a request's client went away. */
export interface CancelSource {
  readonly aborted: boolean;
  readonly signal: AbortSignal;
}

/** How often a waiting request asks Redis again, in case an announcement was missed. */
const POLL_MS = 1000;

export class AgentRouter {
  constructor(
    private readonly registry: AgentRegistry,
    private readonly metrics: ProxyMetrics,
    private readonly presence: AgentPresence,
    /** Sessions to other replicas; null for a single replica. */
    private readonly peers: PeerPool | null,
  ) {}

  /**
   * Opens a stream to the agent with `head`; null when no replica holds the agent within the
   * timeout, or the request was aborted (then nothing is left open). May throw TunnelError from
   * openStream (STREAM_LIMIT, HEADER_TOO_LARGE, STREAM_REFUSED).
   */
  async open(agentId: number, head: Head, o: OpenOptions): Promise<OpenedStream | null> {
    const deadline = Date.now() + o.timeoutMs;
    for (;;) {
      const local = this.registry.pick(agentId, o.tried);
      if (local) {
        this.metrics.routedRequests.inc({ via: 'local' });
        return { stream: local.openStream(head, { end: o.end }), via: local };
      }
      const remote = await this.openRemote(agentId, head, o);
      if (remote) return remote;
      const remaining = deadline - Date.now();
      if (remaining <= 0 || o.cancel.aborted) return null;
      const signal = o.cancel.signal;
      const waits: Array<Promise<unknown>> = [this.registry.waitFor(agentId, remaining, signal, o.tried)];
      waits.push(this.presence.waitRegistered(agentId, Math.min(remaining, POLL_MS), signal));
      await Promise.race(waits);
      if (o.cancel.aborted) return null;
    }
  }

  private async openRemote(agentId: number, head: Head, o: OpenOptions): Promise<OpenedStream | null> {
    if (!this.peers) return null;
    const holders = await this.presence.holders(agentId);
    for (const url of holders) {
      // The client may have gone while Redis or the peer connection was awaited: open nothing for it.
      if (o.cancel.aborted) return null;
      let session: Session;
      try {
        session = await this.peers.get(url);
      } catch {
        continue;
      }
      if (o.cancel.aborted) return null;
      if (o.tried.has(session) || !session.acceptsStreams) continue;
      this.metrics.routedRequests.inc({ via: 'peer' });
      return { stream: session.openStream(encodeRouteHead({ agentId, head }), { end: o.end }), via: session };
    }
    return null;
  }
}
