/**
 * agentk's gitops module: on the leader only, follows every manifest project of the `gitops`
 * section kas sends (a `gitops_manifests` stream each, manifest-client.ts), applies each snapshot
 * (applier.ts) and the last one again every reconcile period (project-runner.ts), and reports each
 * result to kas on a `gitops_status` stream (src/protocol/gitops-status.ts). Losing the leadership,
 * or a project leaving the section, stops its stream and its runner.
 */
import { encodeGitopsStatus, encodeGitopsStatusHead, decodeGitopsStatusReply, GITOPS_STATUS_STREAM, type GitopsStatusWire } from '../../protocol/gitops-status.js';
import { replyOf } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentkModule, AgentkModuleContext } from '../module.js';
import { ApiServerClient } from '../kubernetes-api/api-server.js';
import { KubeJson } from '../kubernetes-api/kube-json.js';
import { agentIdFromKas } from '../leader-election/module.js';
import { Applier, type ApplyResult } from './applier.js';
import { followManifestProject, parseGitopsSection } from './manifest-client.js';
import { GitopsMetrics } from './metrics.js';
import { ProjectRunner, type ApplyTrigger } from './project-runner.js';

export const DEFAULT_RECONCILE_PERIOD_MS = 5 * 60_000;
/** Status reports waiting for kas at most; older ones are dropped (the next apply reports again). */
const MAX_PENDING_REPORTS = 100;

interface Followed {
  abort: AbortController;
  runner: ProjectRunner;
  done: Promise<void>;
}

/** The result as it goes to kas: unchanged objects only counted. */
export function statusWire(result: ApplyResult, trigger: ApplyTrigger): GitopsStatusWire {
  const listed = result.objects.filter((o) => o.action !== 'unchanged');
  return {
    project_id: result.projectId,
    commit: result.commit,
    trigger,
    dry_run: result.dryRun,
    started_at: result.startedAt,
    duration_ms: result.durationMs,
    applied: result.applied,
    unchanged: result.unchanged,
    pruned: result.pruned,
    failed: result.failed,
    ...(result.pruneSkipped !== undefined && { prune_skipped: result.pruneSkipped }),
    objects: listed.map((o) => ({
      group: o.group,
      kind: o.kind,
      namespace: o.namespace,
      name: o.name,
      action: o.action,
      ...(o.source !== undefined && { source: o.source }),
      ...(o.adopted && { adopted: true }),
      ...(o.reason !== undefined && { reason: o.reason }),
    })),
    objects_omitted: 0,
    errors: result.errors.map((e) => ({ code: e.code, message: e.message, ...(e.path !== undefined && { path: e.path }), ...(e.object !== undefined && { object: e.object }) })),
    errors_omitted: 0,
  };
}

export class GitopsModule implements AgentkModule {
  readonly name = 'gitops';
  private readonly ctx: AgentkModuleContext;
  private readonly logger: Logger;
  private readonly metrics: GitopsMetrics;
  private readonly reconcilePeriodMs: number;
  private client: ApiServerClient | null = null;
  private applier: Applier | null = null;
  private projects: string[] = [];
  private readonly followed = new Map<string, Followed>();
  private readonly abort = new AbortController();
  private unsubscribeConfig: (() => void) | null = null;
  private unsubscribeLeader: (() => void) | null = null;
  private agentId: number | null = null;
  private started = false;
  private pendingReports = 0;
  private warnedNoStatus = false;

  constructor(ctx: AgentkModuleContext) {
    this.ctx = ctx;
    this.logger = ctx.logger;
    this.metrics = new GitopsMetrics(ctx.metrics);
    this.reconcilePeriodMs = ctx.options.gitopsReconcilePeriodMs ?? DEFAULT_RECONCILE_PERIOD_MS;
  }

  async start(): Promise<void> {
    this.started = true;
    this.unsubscribeConfig = this.ctx.configuration.subscribe('gitops', (section) => {
      this.projects = parseGitopsSection(section as Parameters<typeof parseGitopsSection>[0]);
      if (this.projects.length > 0 && !this.unsubscribeLeader) {
        // The first project starts the campaign; without projects agentk never touches Leases.
        this.unsubscribeLeader = this.ctx.leader.onChange(() => this.sync());
      }
      this.sync();
    });
    agentIdFromKas(this.ctx.kas, this.abort.signal).then(
      (id) => {
        this.agentId = id;
        this.sync();
      },
      () => undefined,
    );
  }

  /** Follows exactly the configured projects while leading; nothing otherwise. */
  private sync(): void {
    if (!this.started || this.abort.signal.aborted) return;
    const wanted = this.ctx.leader.isLeader && this.agentId !== null ? new Set(this.projects) : new Set<string>();
    for (const [id, f] of this.followed) {
      if (!wanted.has(id)) {
        this.followed.delete(id);
        this.logger.info({ projectId: id, leader: this.ctx.leader.isLeader }, 'gitops: no longer following the manifest project');
        f.abort.abort(new Error('not followed any more'));
        void f.runner.stop();
      }
    }
    for (const id of wanted) {
      if (this.followed.has(id)) continue;
      this.follow(id);
    }
  }

  private ensureApplier(): Applier {
    if (!this.applier) {
      this.client = new ApiServerClient(this.ctx.options.apiServer, { logger: this.logger, tokenRefreshMs: this.ctx.options.tokenRefreshMs });
      this.applier = new Applier({ kube: new KubeJson(this.client), agentId: String(this.agentId), logger: this.logger });
    }
    return this.applier;
  }

  private follow(projectId: string): void {
    const abort = new AbortController();
    const runner = new ProjectRunner({
      applier: this.ensureApplier(),
      reconcilePeriodMs: this.reconcilePeriodMs,
      logger: this.logger,
      onResult: (result, trigger) => this.report(result, trigger),
    });
    this.logger.info({ projectId }, 'gitops: following the manifest project');
    const done = followManifestProject(this.ctx.kas, projectId, {
      signal: abort.signal,
      logger: this.logger,
      onSnapshot: (snapshot) => runner.submit(snapshot),
    });
    this.followed.set(projectId, { abort, runner, done });
  }

  private report(result: ApplyResult, trigger: ApplyTrigger): void {
    this.metrics.record(result);
    const level = result.failed > 0 || result.errors.length > 0 ? 'warn' : 'info';
    this.logger[level](
      { projectId: result.projectId, commit: result.commit, trigger, applied: result.applied, unchanged: result.unchanged, pruned: result.pruned, failed: result.failed, durationMs: result.durationMs, pruneSkipped: result.pruneSkipped, errors: result.errors.slice(0, 5) },
      'gitops: applied the manifest project',
    );
    if (this.ctx.kas.servedBy(GITOPS_STATUS_STREAM) === false) {
      if (!this.warnedNoStatus) this.logger.info('gitops: the connected kas takes no gitops_status; apply results are only logged');
      this.warnedNoStatus = true;
      return;
    }
    if (this.pendingReports >= MAX_PENDING_REPORTS) {
      this.logger.warn({ projectId: result.projectId }, 'gitops: too many status reports waiting for kas; dropping this one');
      return;
    }
    this.pendingReports++;
    const data = encodeGitopsStatus(statusWire(result, trigger));
    void (async () => {
      try {
        const stream = await this.ctx.kas.open(encodeGitopsStatusHead({ projectId: result.projectId }), { data, end: true, signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(60_000)]) });
        const reply = decodeGitopsStatusReply(await replyOf(stream));
        stream.resume();
        if (!reply.accepted) this.logger.warn({ projectId: result.projectId, reason: reply.reason }, 'gitops: kas refused the status report');
      } catch (err) {
        if (!this.abort.signal.aborted) this.logger.warn({ err, projectId: result.projectId }, 'gitops: could not send the status report to kas');
      } finally {
        this.pendingReports--;
      }
    })();
  }

  async stop(): Promise<void> {
    this.abort.abort(new Error('agentk is stopping'));
    this.unsubscribeConfig?.();
    this.unsubscribeLeader?.();
    const stopping = [...this.followed.values()].map(async (f) => {
      f.abort.abort(new Error('agentk is stopping'));
      await f.runner.stop();
      await f.done;
    });
    this.followed.clear();
    await Promise.all(stopping);
    this.client?.close();
  }
}
