/** What the replicas module offers: the shared state (memory or Redis) and sessions to other replicas. */
import type { PeerPool } from '../routing/peer-pool.js';
import { serviceKey } from '../services.js';
import type { ReplicaState } from './replica-state.js';

export const REPLICA_STATE = serviceKey<ReplicaState>('replica_state');

/** Sessions to other replicas' private APIs; null for a single replica (no redis section). */
export const PEERS = serviceKey<PeerPool | null>('peers');
