/**
 * The kas half of Flux reconcile-on-push: serves the `flux_git_push` streams agentk opens. Each
 * stream carries agentk's list of followed projects (replaced as a whole by every `subscribe`);
 * kas checks each project with GitLab (GitLab mode: project_info with the agent's token, giving the
 * id pushes are published under) or takes it as is (standalone mode: matched by path), answers
 * with what it accepted and refused, then forwards every git push of an accepted project and a
 * heartbeat every interval. Access is checked again every `recheckMs` (a revoked access stops the
 * forwarding), and projects GitLab could not be asked about are retried after `retryMs`.
 *
 * Bounds: projects per stream (configuration), one queued subscription per stream (a newer list
 * replaces a waiting one), the bytes waiting to be sent to agentk (a stream that does not read is
 * reset with BUFFER_LIMIT; agentk reopens and resubscribes).
 */
import {
  decodeFluxSubscribe,
  encodeFluxMessage,
  encodeFluxReplyHead,
  FluxMessageReader,
  MAX_FLUX_REASON_LENGTH,
  projectKey,
  type FluxDownMessage,
} from '../../protocol/flux.js';
import { TunnelError } from '../../protocol/errors.js';
import type { TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import type { GitPushEvent } from '../replicas/replica-state.js';
import type { AgentConnection } from '../tunnel/agent-registry.js';
import type { FluxMetrics } from './metrics.js';
import type { ProjectAccessChecker } from './project-access.js';

export interface FluxPushHubOptions {
  /** GitLab's access check; null in standalone mode (every project is accepted, matched by path). */
  access: ProjectAccessChecker | null;
  heartbeatMs: number;
  maxProjects: number;
  /** How often accepted projects are checked again (GitLab mode). */
  recheckMs: number;
  /** How soon projects GitLab could not be asked about are asked again. */
  retryMs: number;
  metrics: FluxMetrics;
  logger: Logger;
  /** Bytes that may wait to be sent on one stream (default 1 MiB). */
  maxBufferedBytes?: number;
  /** Concurrent GitLab checks per stream (default 8). */
  checkConcurrency?: number;
}

/** Open flux_git_push streams one agent may have on one replica (its leader needs one; restarts overlap briefly). */
export const MAX_FLUX_STREAMS_PER_AGENT = 8;

export class FluxPushHub {
  private readonly subscribers = new Set<FluxSubscriber>();
  private readonly perAgent = new Map<number, number>();
  private stopped = false;

  constructor(private readonly o: FluxPushHubOptions) {}

  /** A git push from the fan-out (every replica gets every push). */
  push(event: GitPushEvent): void {
    for (const s of this.subscribers) s.push(event);
  }

  serve(stream: TunnelStream, connection: AgentConnection, logger: Logger): void {
    if (this.stopped) {
      stream.reset('STREAM_REFUSED', 'kas is stopping');
      return;
    }
    const agentId = connection.identity.agentId;
    const open = this.perAgent.get(agentId) ?? 0;
    if (open >= MAX_FLUX_STREAMS_PER_AGENT) {
      logger.warn({ agentId }, 'agent opened too many flux_git_push streams: refusing one');
      stream.reset('STREAM_LIMIT', `at most ${MAX_FLUX_STREAMS_PER_AGENT} flux_git_push streams per agent`);
      return;
    }
    this.perAgent.set(agentId, open + 1);
    const subscriber = new FluxSubscriber(stream, connection, logger.child({ feature: 'flux' }), this.o, () => {
      this.subscribers.delete(subscriber);
      const n = (this.perAgent.get(agentId) ?? 1) - 1;
      if (n <= 0) this.perAgent.delete(agentId);
      else this.perAgent.set(agentId, n);
    });
    this.subscribers.add(subscriber);
    this.o.metrics.streams.inc();
  }

  /** Ends every stream (agentk resubscribes on another session or replica). */
  stop(): void {
    this.stopped = true;
    for (const s of [...this.subscribers]) s.close();
  }

  get streamCount(): number {
    return this.subscribers.size;
  }
}

class FluxSubscriber {
  private readonly reader = new FluxMessageReader();
  /** Accepted projects by numeric id (GitLab mode) and by lower-cased path, with the path agentk wrote. */
  private byId = new Map<number, string>();
  private byPath = new Map<string, string>();
  private wanted: string[] = [];
  private running = false;
  private queued: string[] | null = null;
  private generation = 0;
  private closed = false;
  private readonly heartbeat: NodeJS.Timeout;
  private recheck: NodeJS.Timeout | null = null;
  private retry: NodeJS.Timeout | null = null;

  constructor(
    private readonly stream: TunnelStream,
    private readonly connection: AgentConnection,
    private readonly logger: Logger,
    private readonly o: FluxPushHubOptions,
    private readonly onClose: () => void,
  ) {
    stream.reply(encodeFluxReplyHead({ heartbeatMs: o.heartbeatMs }));
    this.heartbeat = setInterval(() => this.send({ type: 'heartbeat' }), o.heartbeatMs);
    this.heartbeat.unref();
    if (o.access) {
      this.recheck = setInterval(() => this.subscribe(this.wanted), o.recheckMs);
      this.recheck.unref();
    }
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => {
      stream.end();
      this.cleanup();
    });
    stream.on('close', () => this.cleanup());
    stream.on('error', () => this.cleanup());
  }

  push(event: GitPushEvent): void {
    if (this.closed) return;
    const targets = new Set<string>();
    const byId = this.byId.get(event.projectId);
    if (byId !== undefined) targets.add(byId);
    if (event.fullPath !== null) {
      const byPath = this.byPath.get(projectKey(event.fullPath));
      if (byPath !== undefined) targets.add(byPath);
    }
    for (const project of targets) {
      this.o.metrics.notifications.inc();
      this.logger.debug({ project, projectId: event.projectId }, 'forwarding a git push to agentk');
      this.send({ type: 'push', project });
    }
  }

  close(): void {
    if (this.closed) return;
    this.stream.end();
    this.cleanup();
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    try {
      for (const value of this.reader.push(chunk)) {
        const message = decodeFluxSubscribe(value, this.o.maxProjects);
        this.subscribe(message.projects);
      }
    } catch (err) {
      const message = err instanceof TunnelError ? err.message : 'invalid flux_git_push data';
      this.logger.warn({ agentId: this.connection.identity.agentId, err: message }, 'agentk sent an invalid flux_git_push message: resetting the stream');
      this.stream.reset('PROTOCOL_ERROR', message);
      this.cleanup();
    }
  }

  /** Checks and puts in force a list; one check runs at a time per stream, the latest list waits. */
  private subscribe(projects: string[]): void {
    if (this.closed) return;
    this.wanted = projects;
    if (this.running) {
      this.queued = projects;
      return;
    }
    this.running = true;
    const generation = ++this.generation;
    void this.check(projects).then(
      (result) => {
        this.running = false;
        if (this.closed || generation !== this.generation) return;
        this.putInForce(result);
        const next = this.queued;
        this.queued = null;
        if (next) this.subscribe(next);
      },
      (err: unknown) => {
        this.running = false;
        this.logger.error({ err }, 'checking flux projects failed');
        this.stream.reset('INTERNAL', 'kas failed to check the projects');
        this.cleanup();
      },
    );
  }

  private async check(projects: string[]): Promise<CheckResult> {
    const result: CheckResult = { accepted: [], refused: [], transient: false };
    const access = this.o.access;
    if (!access) {
      for (const p of projects) result.accepted.push({ path: p, projectId: null });
      return result;
    }
    const token = this.connection.agentToken?.();
    if (token === undefined) {
      for (const p of projects) result.refused.push({ project: p, reason: 'kas has no agent token to ask GitLab with' });
      return result;
    }
    let next = 0;
    const worker = async () => {
      while (next < projects.length && !this.closed) {
        const path = projects[next++]!;
        const answer = await access.check(token, path);
        if (answer.ok) result.accepted.push({ path, projectId: answer.projectId });
        else {
          result.refused.push({ project: path, reason: answer.reason.slice(0, MAX_FLUX_REASON_LENGTH) });
          this.o.metrics.refusals.inc({ reason: answer.definite ? 'access' : 'unavailable' });
          if (!answer.definite) result.transient = true;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.checkConcurrency ?? 8, projects.length) }, worker));
    return result;
  }

  private putInForce(result: CheckResult): void {
    const byId = new Map<number, string>();
    const byPath = new Map<string, string>();
    for (const a of result.accepted) {
      if (a.projectId !== null) byId.set(a.projectId, a.path);
      byPath.set(projectKey(a.path), a.path);
    }
    this.o.metrics.subscribedProjects.inc(byPath.size - this.byPath.size);
    this.byId = byId;
    this.byPath = byPath;
    if (result.refused.length > 0) {
      this.logger.info({ agentId: this.connection.identity.agentId, refused: result.refused.slice(0, 20) }, 'flux projects refused');
    }
    this.send({ type: 'subscribed', accepted: result.accepted.map((a) => a.path), refused: result.refused });
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    if (result.transient) {
      this.retry = setTimeout(() => this.subscribe(this.wanted), this.o.retryMs);
      this.retry.unref();
    }
  }

  private send(message: FluxDownMessage): void {
    if (this.closed || this.stream.destroyed || this.stream.writableEnded) return;
    if (this.stream.writableLength > (this.o.maxBufferedBytes ?? 1024 * 1024)) {
      this.logger.warn({ agentId: this.connection.identity.agentId }, 'agentk does not read its flux_git_push stream: resetting it');
      this.stream.reset('BUFFER_LIMIT', 'too many flux notifications wait to be sent');
      this.cleanup();
      return;
    }
    this.stream.write(encodeFluxMessage(message));
  }

  private cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    if (this.recheck) clearInterval(this.recheck);
    if (this.retry) clearTimeout(this.retry);
    this.o.metrics.subscribedProjects.dec(this.byPath.size);
    this.o.metrics.streams.dec();
    this.byId.clear();
    this.byPath.clear();
    this.onClose();
  }
}

interface CheckResult {
  accepted: Array<{ path: string; projectId: number | null }>;
  refused: Array<{ project: string; reason: string }>;
  /** Some project could not be checked (GitLab unavailable): check again soon. */
  transient: boolean;
}
