/**
 * What kas replicas share, one interface per concern, with a memory implementation (one replica,
 * no Redis) and a Redis one (docs/replicas.md). Modules use these instead of asking whether Redis is
 * configured: the memory implementation answers for this replica alone, exactly what the Redis one
 * falls back to while Redis is unreachable.
 */
import type { ConnectionRecord } from './connection-record.js';

/** Which replicas hold an agent, for routing a request to one of them. */
export interface AgentPresence {
  /** Private API URLs of the other replicas that hold the agent now ([] when none is known). */
  holders(agentId: number): Promise<string[]>;
  /**
   * Resolves when another replica announces the agent, after timeoutMs, or on abort. Callers race
   * it with their own wait on the local registry; where no other replica exists it never resolves.
   */
  waitRegistered(agentId: number, timeoutMs: number, signal?: AbortSignal): Promise<void>;
}

/** The connections of agents, as the API for GitLab shows them. */
export interface ConnectionRecords {
  /** The connections of agents (by agent ids, or by their configuration projects), on every replica known. */
  connections(agentIds: number[], projectIds: number[]): Promise<ConnectionRecord[]>;
  /**
   * One of this replica's connections of the agent changed what its record shows (a registration):
   * other replicas see it from now on. Resolves once written (at once in memory); never rejects.
   */
  changed(agentId: number): Promise<void>;
}

/** A git push as the API for GitLab was told of it: the project's id and, when given, its full path. */
export interface GitPushEvent {
  projectId: number;
  /** `project.full_path` of the event (null when the caller did not send one). */
  fullPath: string | null;
}

/** Git-push notifications, delivered to the subscribers of every replica. */
export interface GitPushFanOut {
  publish(projectId: number, fullPath?: string | null): Promise<void>;
  /** Listeners run on every replica, this one included, for every published push. */
  subscribe(listener: (projectId: number) => void): void;
  /**
   * Like subscribe, with the project's full path too (Flux matches projects by path). Pushes
   * published by replicas older than this one (id only) do not reach these listeners.
   */
  subscribeEvents(listener: (event: GitPushEvent) => void): void;
}

/** GitLab's refusals of credentials (by digest), shared so other replicas do not ask again. */
export interface RefusalCache {
  refusedRecently(kind: string, digest: string): Promise<boolean>;
  recordRefusal(kind: string, digest: string, ttlMs: number): Promise<void>;
}

/** The per-token limit of new agent connections per minute. */
export interface ConnectionRateLimit {
  /** Counts a connection of a token (by its digest); false when over `limit` this minute. */
  allow(tokenDigest: string, limit: number): Promise<boolean>;
}

/** Everything replicas share, with its lifecycle (owned by the replicas module). */
export interface ReplicaState {
  readonly presence: AgentPresence;
  readonly records: ConnectionRecords;
  readonly gitPush: GitPushFanOut;
  readonly refusals: RefusalCache;
  readonly rateLimit: ConnectionRateLimit;
  /** False while the shared store is unreachable (always true in memory). */
  readonly healthy: boolean;
  /** Starts publishing this replica's agents; `ownUrl` is how other replicas reach its private API. */
  start(ownUrl: string): Promise<void>;
  /** Takes this replica out of routing (shutdown): its entries go at once, no more are written. */
  withdraw(): Promise<void>;
  stop(): Promise<void>;
}
