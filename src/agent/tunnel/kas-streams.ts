/**
 * Streams agentk opens towards kas (registration, cluster events, health, GitOps): the sessions of
 * the tunnel pool that are open, what stream types the kas behind each one serves (its WELCOME
 * `features`), and a wait for a session that serves a type. Modules take it from their context
 * (`ctx.kas`) and never see the pool.
 *
 *   const stream = await ctx.kas.open({ t: 'agent_events' }, { signal });   // waits for a session
 *   ctx.kas.onSession((s) => s.open({ t: 'agent_info' }, { data, end: true }));   // once per session
 *
 * An older kas that serves no such type is never sent one: `open` keeps waiting (a newer kas may
 * come after a rollout) and `servedBy()` tells a module, for one log line, that no kas serves it.
 */
import type { Head } from '../../protocol/frames.js';
import type { Session } from '../../protocol/session.js';
import type { TunnelStream } from '../../protocol/stream.js';

/** One open session to kas, as modules see it. */
export interface KasSession {
  /** kas's id of the connection (WELCOME `connectionId`), for logs. */
  readonly connectionId: string;
  /** The agent's id as kas knows it (WELCOME `agentId`), null when kas did not say. */
  readonly agentId: number | null;
  /** The stream types the kas behind this session serves. */
  readonly features: ReadonlySet<string>;
  /** Opens a stream on this session; throws TunnelError STREAM_REFUSED once it is draining or closed. */
  open(head: Head, options?: { data?: Uint8Array; end?: boolean }): TunnelStream;
  /** Whether the session still accepts new streams. */
  readonly usable: boolean;
  /** Called once when the session stops accepting streams (GOAWAY or close). */
  onEnd(listener: () => void): void;
}

export class KasStreamsStoppedError extends Error {
  constructor() {
    super('agentk is stopping: no stream to kas can be opened');
    this.name = 'KasStreamsStoppedError';
  }
}

interface Waiter {
  type: string;
  resolve: (s: KasSessionEntry) => void;
  reject: (err: Error) => void;
}

class KasSessionEntry implements KasSession {
  readonly connectionId: string;
  readonly agentId: number | null;
  readonly features: ReadonlySet<string>;
  private readonly session: Session;
  private ended = false;
  private readonly endListeners: Array<() => void> = [];

  constructor(session: Session, welcome: Head) {
    this.session = session;
    this.connectionId = typeof welcome.connectionId === 'string' ? welcome.connectionId.slice(0, 64) : '';
    this.agentId = typeof welcome.agentId === 'number' && Number.isSafeInteger(welcome.agentId) && welcome.agentId > 0 ? welcome.agentId : null;
    const features = Array.isArray(welcome.features) ? welcome.features.filter((f): f is string => typeof f === 'string').slice(0, 64) : [];
    this.features = new Set(features);
  }

  get usable(): boolean {
    return !this.ended && this.session.acceptsStreams;
  }

  open(head: Head, options?: { data?: Uint8Array; end?: boolean }): TunnelStream {
    return this.session.openStream(head, options);
  }

  onEnd(listener: () => void): void {
    if (this.ended) queueMicrotask(listener);
    else this.endListeners.push(listener);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const l of this.endListeners.splice(0)) {
      try {
        l();
      } catch {
        // A module's listener must not break the pool.
      }
    }
  }
}

export class KasStreams {
  private readonly entries = new Map<Session, KasSessionEntry>();
  private readonly waiters = new Set<Waiter>();
  private readonly listeners = new Set<(s: KasSession) => void>();
  private stopped = false;

  /** The sessions open now (not draining). */
  get sessions(): readonly KasSession[] {
    return [...this.entries.values()].filter((e) => e.usable);
  }

  /**
   * Whether a connected kas serves `type`: true or false from the sessions open now, null when
   * none is open (not known yet).
   */
  servedBy(type: string): boolean | null {
    const open = this.sessions;
    if (open.length === 0) return null;
    return open.some((s) => s.features.has(type));
  }

  /**
   * Calls `listener` for every session open now and for each session that opens later, until the
   * returned function is called. Listeners must not throw.
   */
  onSession(listener: (s: KasSession) => void): () => void {
    this.listeners.add(listener);
    for (const s of this.sessions) listener(s);
    return () => this.listeners.delete(listener);
  }

  /**
   * Opens a stream of type `head.t` on the least loaded open session whose kas serves that type,
   * waiting for one. Rejects when `signal` aborts or agentk stops (KasStreamsStoppedError).
   */
  async open(head: Head, options?: { data?: Uint8Array; end?: boolean; signal?: AbortSignal }): Promise<TunnelStream> {
    const type = head.t;
    if (typeof type !== 'string') throw new TypeError('a stream head needs a string type t');
    for (;;) {
      const entry = await this.sessionFor(type, options?.signal);
      if (entry.usable) return entry.open(head, { data: options?.data, end: options?.end });
    }
  }

  /** A usable session serving `type`, waiting for one. */
  sessionFor(type: string, signal?: AbortSignal): Promise<KasSessionEntry> {
    if (this.stopped) return Promise.reject(new KasStreamsStoppedError());
    if (signal?.aborted) return Promise.reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    const now = this.pick(type);
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        type,
        resolve: (s) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(s);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      const onAbort = () => {
        this.waiters.delete(waiter);
        waiter.reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  /** The pool: a session completed its handshake (WELCOME is `welcome`). */
  added(session: Session, welcome: Head): void {
    if (this.stopped || this.entries.has(session)) return;
    const entry = new KasSessionEntry(session, welcome);
    this.entries.set(session, entry);
    for (const w of [...this.waiters]) {
      if (entry.features.has(w.type)) {
        this.waiters.delete(w);
        w.resolve(entry);
      }
    }
    for (const l of this.listeners) {
      try {
        l(entry);
      } catch {
        // A module's listener must not break the pool.
      }
    }
  }

  /** The pool: a session drains or closed; it takes no new streams. */
  removed(session: Session): void {
    const entry = this.entries.get(session);
    if (!entry) return;
    this.entries.delete(session);
    entry.end();
  }

  /** agentk stops: waiting opens reject, sessions end. */
  stop(): void {
    this.stopped = true;
    for (const w of this.waiters) w.reject(new KasStreamsStoppedError());
    this.waiters.clear();
    for (const session of [...this.entries.keys()]) this.removed(session);
  }

  private pick(type: string): KasSessionEntry | null {
    let best: KasSessionEntry | null = null;
    let bestLoad = Infinity;
    for (const [session, entry] of this.entries) {
      if (!entry.usable || !entry.features.has(type)) continue;
      if (session.streamCount < bestLoad) {
        best = entry;
        bestLoad = session.streamCount;
      }
    }
    return best;
  }
}
