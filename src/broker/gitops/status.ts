/**
 * The GitOps status feature, kas half: serves `gitops_status` streams (src/protocol/gitops-status.ts),
 * keeps the latest apply result of each agent and manifest project (bounded by count and bytes,
 * oldest dropped first) and answers `GET /api/v1/agents/{agent_id}/gitops`. With a redis section the
 * results are also kept in Redis (status-redis.ts) and the API answers from there, so every replica
 * answers for every agent; while Redis fails it answers from this replica's memory.
 */
import type { FastifyInstance } from 'fastify';
import { decodeGitopsStatus, decodeGitopsStatusHead, encodeGitopsStatusReply, MAX_GITOPS_STATUS_BYTES, type GitopsStatusWire } from '../../protocol/gitops-status.js';
import { isTunnelError } from '../../protocol/errors.js';
import type { TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import { apiError, oneId } from '../api/routes.js';
import type { AgentConnection } from '../tunnel/agent-registry.js';
import type { GitopsStatusMetrics } from './status-metrics.js';
import type { RedisGitopsStatus } from './status-redis.js';

export interface StoredStatus {
  agentId: number;
  receivedAt: string;
  status: GitopsStatusWire;
  bytes: number;
}

/** What kas passes on besides storing (usage counts, cluster events). */
export interface StatusListener {
  (agentId: number, status: GitopsStatusWire): void;
}

export class GitopsStatusStore {
  /** Insertion order = age: a key is deleted and set again on update. */
  private readonly entries = new Map<string, StoredStatus>();
  private bytes = 0;
  private readonly listeners: StatusListener[] = [];
  /** Writes to Redis in flight, awaited on stop. */
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly limits: { maxResults: number; maxBytes: number },
    private readonly metrics: GitopsStatusMetrics,
    /** With a redis section: where every replica keeps and reads the results. */
    private readonly shared: { redis: RedisGitopsStatus; logger: Logger } | null = null,
  ) {}

  /** Waits for the writes to Redis in flight. */
  async flush(): Promise<void> {
    await Promise.all([...this.pending]);
  }

  onStatus(listener: StatusListener): void {
    this.listeners.push(listener);
  }

  put(agentId: number, status: GitopsStatusWire, bytes: number, receivedAt = new Date()): void {
    const key = `${agentId}\u0000${status.project_id}`;
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      this.bytes -= old.bytes;
    }
    this.entries.set(key, { agentId, receivedAt: receivedAt.toISOString(), status, bytes });
    this.bytes += bytes;
    for (const [k, e] of this.entries) {
      if (this.entries.size <= this.limits.maxResults && this.bytes <= this.limits.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= e.bytes;
    }
    this.metrics.kept.set(this.entries.size);
  }

  /** The latest result of every project of the agent, by project id. */
  forAgent(agentId: number): StoredStatus[] {
    return [...this.entries.values()].filter((e) => e.agentId === agentId).sort((a, b) => (a.status.project_id < b.status.project_id ? -1 : 1));
  }

  /**
   * What the API shows for an agent: from Redis when there is a redis section, from this replica's
   * memory without one or while Redis fails.
   */
  async list(agentId: number): Promise<Array<{ receivedAt: string; status: GitopsStatusWire }>> {
    if (this.shared) {
      const fromRedis = await this.shared.redis.forAgent(agentId);
      if (fromRedis) return fromRedis;
      this.shared.logger.warn({ agentId }, 'Redis failed: GitOps apply results answered from this replica\'s memory');
    }
    return this.forAgent(agentId);
  }

  /** Serves one `gitops_status` stream: read (bounded), check, keep, reply, end. */
  serve(stream: TunnelStream, connection: AgentConnection, logger: Logger): void {
    let head;
    try {
      head = decodeGitopsStatusHead(stream.peerHead ?? {});
    } catch (err) {
      this.metrics.reports.inc({ result: 'invalid' });
      stream.reset('PROTOCOL_ERROR', (err as Error).message.slice(0, 512));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    stream.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.byteLength;
      if (size > MAX_GITOPS_STATUS_BYTES) {
        failed = true;
        this.metrics.reports.inc({ result: 'invalid' });
        logger.warn({ agentId: connection.identity.agentId, size }, 'gitops status report too large; reset');
        stream.reset('PROTOCOL_ERROR', `invalid gitops_status message: larger than ${MAX_GITOPS_STATUS_BYTES} bytes`);
        return;
      }
      chunks.push(chunk);
    });
    stream.on('error', () => undefined);
    stream.on('end', () => {
      if (failed) return;
      const data = Buffer.concat(chunks);
      let status: GitopsStatusWire;
      try {
        status = decodeGitopsStatus(data, head);
      } catch (err) {
        this.metrics.reports.inc({ result: 'invalid' });
        logger.warn({ err, agentId: connection.identity.agentId }, 'invalid gitops status report; reset');
        stream.reset(isTunnelError(err) ? err.code : 'PROTOCOL_ERROR', (err as Error).message.slice(0, 512));
        return;
      }
      const agentId = connection.identity.agentId;
      const receivedAt = new Date();
      this.put(agentId, status, data.byteLength, receivedAt);
      if (this.shared) {
        const write = this.shared.redis.put(agentId, receivedAt, status);
        this.pending.add(write);
        void write.finally(() => this.pending.delete(write));
      }
      this.metrics.record(status);
      logger.info({ agentId, projectId: status.project_id, commit: status.commit, applied: status.applied, unchanged: status.unchanged, pruned: status.pruned, failed: status.failed }, 'gitops apply result');
      for (const l of this.listeners) {
        try {
          l(agentId, status);
        } catch (err) {
          logger.error({ err }, 'gitops status listener failed');
        }
      }
      stream.reply(encodeGitopsStatusReply(true), { end: true });
    });
  }

  routes(app: FastifyInstance): void {
    app.get('/api/v1/agents/:agent_id/gitops', async (request, reply) => {
      const agentId = oneId((request.params as { agent_id?: unknown }).agent_id);
      if (agentId === null) return apiError(reply, 400, 'BAD_REQUEST', 'agent_id must be a positive integer');
      const projects = (await this.list(agentId)).map((e) => ({ ...e.status, received_at: e.receivedAt }));
      return reply.send({ agent_id: agentId, projects });
    });
  }
}
