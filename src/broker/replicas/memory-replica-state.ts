/**
 * The state of a single replica (no Redis): presence is the local registry alone (no other holders),
 * records are this replica's connections, git pushes reach this replica's subscribers, the refusal
 * cache is GitLab auth's own local one (nothing to share), the rate limit counts in memory.
 */
import type { AgentRegistry } from '../tunnel/agent-registry.js';
import { localConnections } from './connection-record.js';
import { MemoryConnectionRateLimit } from './memory-rate-limit.js';
import type { AgentPresence, ConnectionRecords, GitPushEvent, GitPushFanOut, RefusalCache, ReplicaState } from './replica-state.js';

export class MemoryReplicaState implements ReplicaState {
  readonly healthy = true;
  readonly rateLimit = new MemoryConnectionRateLimit();
  private readonly gitPushListeners = new Set<(projectId: number) => void>();
  private readonly gitPushEventListeners = new Set<(event: GitPushEvent) => void>();

  readonly presence: AgentPresence = {
    holders: (): Promise<string[]> => Promise.resolve([]),
    // No other replica exists to announce an agent: the caller's wait on the local registry ends it.
    waitRegistered: (): Promise<void> => new Promise<void>(() => undefined),
  };

  readonly records: ConnectionRecords = {
    connections: (agentIds: number[], projectIds: number[]) => Promise.resolve(localConnections(this.registry, this.instanceName, agentIds, projectIds)),
    // Records are made from the registry when asked: nothing to rewrite.
    changed: (): Promise<void> => Promise.resolve(),
  };

  readonly gitPush: GitPushFanOut = {
    publish: (projectId: number, fullPath?: string | null): Promise<void> => {
      for (const l of this.gitPushListeners) l(projectId);
      const event: GitPushEvent = { projectId, fullPath: fullPath ?? null };
      for (const l of this.gitPushEventListeners) l(event);
      return Promise.resolve();
    },
    subscribe: (listener: (projectId: number) => void): void => {
      this.gitPushListeners.add(listener);
    },
    subscribeEvents: (listener: (event: GitPushEvent) => void): void => {
      this.gitPushEventListeners.add(listener);
    },
  };

  readonly refusals: RefusalCache = {
    refusedRecently: (): Promise<boolean> => Promise.resolve(false),
    recordRefusal: (): Promise<void> => Promise.resolve(),
  };

  constructor(
    private readonly registry: AgentRegistry,
    private readonly instanceName: string,
  ) {}

  start(): Promise<void> {
    return Promise.resolve();
  }

  withdraw(): Promise<void> {
    return Promise.resolve();
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }
}
