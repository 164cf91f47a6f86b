/**
 * Polls the manifest projects of every agent connected to this kas: one watch per (agent, project
 * of its `gitops.manifest_projects`), created and changed as the agent's configuration changes and
 * dropped when the agent leaves. A watch reads its project every poll period (±10 %), at once on a
 * git push for the project, and when its ref or globs change; only a new commit is read in full.
 * Each watch holds the newest snapshot (files + settings), which the agent's `gitops_manifests`
 * streams send (manifest-stream.ts).
 *
 * Failures: a problem of the project (refused, no such ref or project) replaces the snapshot by one
 * without files that names it; a failure to reach the source keeps the last snapshot (or, before the
 * first one, publishes the failure) and tries again sooner.
 */
import { createHash } from 'node:crypto';
import type { ManifestProblem, ManifestSettingsWire } from '../../protocol/gitops.js';
import type { FileRecord } from '../../protocol/gitops.js';
import { parseDuration } from '../../shared/duration.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentConfiguration } from '../agent-configuration/schema.js';
import type { AgentRegistry } from '../tunnel/agent-registry.js';
import type { GitopsMetrics } from './metrics.js';
import { DEFAULT_MANIFEST_GLOB, ManifestProblemError, type ManifestProjectSpec, type ManifestSource, type SourceSnapshot } from './manifest-source.js';

export type GitopsSection = NonNullable<AgentConfiguration['gitops']>;
type ProjectEntry = NonNullable<GitopsSection['manifest_projects']>[number];

/** What a stream sends: one immutable snapshot; a new object whenever anything in it changed. */
export interface Snapshot {
  commit: string;
  settings: ManifestSettingsWire;
  settingsDigest: string;
  complete: boolean;
  errors: ManifestProblem[];
  files: FileRecord[];
  bytes: number;
}

export interface WatchListener {
  /** The watch has a new snapshot. */
  changed(): void;
  /** The project left the agent's configuration, or the agent left: the stream ends. */
  gone(): void;
}

export interface Subscription {
  current(): Snapshot | null;
  detach(): void;
}

interface Watch {
  readonly agentId: number;
  readonly id: string;
  spec: ManifestProjectSpec;
  specKey: string;
  settings: ManifestSettingsWire;
  settingsDigest: string;
  /** The last full read and the commit it was at. */
  read: SourceSnapshot | null;
  /** A problem of the project that replaced the read. */
  problem: ManifestProblem[] | null;
  snapshot: Snapshot | null;
  pushId: number | null;
  timer: NodeJS.Timeout | null;
  polling: boolean;
  again: boolean;
  failures: number;
  listeners: Set<WatchListener>;
  removed: boolean;
}

export interface PollerOptions {
  source: ManifestSource;
  registry: AgentRegistry;
  pollPeriodMs: number;
  metrics: GitopsMetrics;
  logger: Logger;
  /** The configuration project of an agent (GitLab mode): the default manifest project. */
  defaultProjectOf?: (agentId: number) => string | null;
}

const HOUR_MS = 3600_000;
/** Soonest retry after a failure to reach the source, ms (doubling up to the poll period). */
const RETRY_BASE_MS = 5_000;

function ms(value: string | undefined, def: number): number {
  if (value === undefined) return def;
  return parseDuration(value) ?? def;
}

export function settingsOf(p: ProjectEntry): ManifestSettingsWire {
  return {
    default_namespace: p.default_namespace ?? 'default',
    reconcile_timeout: ms(p.reconcile_timeout, HOUR_MS),
    dry_run_strategy: p.dry_run_strategy ?? 'none',
    prune: p.prune ?? true,
    prune_timeout: ms(p.prune_timeout, HOUR_MS),
    prune_propagation_policy: p.prune_propagation_policy ?? 'foreground',
    inventory_policy: p.inventory_policy ?? 'must_match',
  };
}

/** The digest agentk echoes: the settings and what selects the files (ref, globs). */
function digestOf(settings: ManifestSettingsWire, specKey: string): string {
  return createHash('sha256').update(JSON.stringify([settings, specKey])).digest('hex');
}

function keyOf(agentId: number, id: string): string {
  return `${agentId}\0${id}`;
}

export class ManifestPoller {
  private readonly watches = new Map<string, Watch>();
  private running = false;

  constructor(private readonly o: PollerOptions) {}

  start(): void {
    this.running = true;
    for (const w of this.watches.values()) void this.poll(w);
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const w of [...this.watches.values()]) this.remove(w);
    await this.o.source.close();
  }

  /** The agent's `gitops` section changed (undefined: the agent left this kas). */
  configure(agentId: number, section: GitopsSection | undefined): void {
    const wanted = new Map<string, ProjectEntry>();
    for (const p of section?.manifest_projects ?? []) {
      const id = p.id ?? this.o.defaultProjectOf?.(agentId) ?? null;
      if (id === null) {
        this.o.logger.warn({ agentId }, 'a gitops manifest project has no id and there is no configuration project to default to (standalone mode); it is skipped');
        this.o.metrics.errors.inc({ code: 'MANIFEST_PROJECT_NOT_FOUND' });
        continue;
      }
      if (wanted.has(id)) {
        this.o.logger.warn({ agentId, projectId: id }, 'a gitops manifest project is listed twice; the first entry is used');
        continue;
      }
      wanted.set(id, p);
    }
    for (const w of [...this.watches.values()]) {
      if (w.agentId === agentId && !wanted.has(w.id)) this.remove(w);
    }
    for (const [id, entry] of wanted) this.upsert(agentId, id, entry);
    this.o.metrics.projects.set(this.watches.size);
  }

  /**
   * A git push for a project (its number): its watches poll now, and so do watches whose number is
   * not known yet (never read: GitLab tells the number with the first read), so no push is lost.
   */
  gitPush(projectNumber: number): void {
    for (const w of this.watches.values()) {
      if (w.pushId === projectNumber || w.id === String(projectNumber) || (w.pushId === null && !w.read)) {
        this.o.logger.debug({ agentId: w.agentId, projectId: w.id }, 'git push: polling the manifest project now');
        void this.poll(w);
      }
    }
  }

  /** Follows a watch; null when the agent's configuration (here) has no such project. */
  attach(agentId: number, projectId: string, listener: WatchListener): Subscription | null {
    const w = this.watches.get(keyOf(agentId, projectId));
    if (!w) return null;
    w.listeners.add(listener);
    return { current: () => (w.removed ? null : w.snapshot), detach: () => w.listeners.delete(listener) };
  }

  /** The projects watched for an agent, for tests and status. */
  projects(agentId: number): Array<{ id: string; snapshot: Snapshot | null }> {
    return [...this.watches.values()].filter((w) => w.agentId === agentId).map((w) => ({ id: w.id, snapshot: w.snapshot }));
  }

  private upsert(agentId: number, id: string, entry: ProjectEntry): void {
    const spec: ManifestProjectSpec = { id, ref: entry.ref, globs: (entry.paths ?? [{ glob: DEFAULT_MANIFEST_GLOB }]).map((p) => p.glob) };
    const specKey = JSON.stringify([spec.ref ?? null, spec.globs]);
    const settings = settingsOf(entry);
    const settingsDigest = digestOf(settings, specKey);
    const key = keyOf(agentId, id);
    const w = this.watches.get(key);
    if (!w) {
      const created: Watch = { agentId, id, spec, specKey, settings, settingsDigest, read: null, problem: null, snapshot: null, pushId: /^\d+$/.test(id) ? Number(id) : null, timer: null, polling: false, again: false, failures: 0, listeners: new Set(), removed: false };
      this.watches.set(key, created);
      if (this.running) void this.poll(created);
      return;
    }
    if (w.settingsDigest === settingsDigest) return;
    const specChanged = w.specKey !== specKey;
    w.spec = spec;
    w.specKey = specKey;
    w.settings = settings;
    w.settingsDigest = settingsDigest;
    if (specChanged) {
      // Other files, maybe another commit: read again in full.
      w.read = null;
      void this.poll(w);
    } else {
      this.publish(w);
    }
  }

  private remove(w: Watch): void {
    w.removed = true;
    if (w.timer) clearTimeout(w.timer);
    w.timer = null;
    this.watches.delete(keyOf(w.agentId, w.id));
    for (const l of [...w.listeners]) l.gone();
    w.listeners.clear();
  }

  private tokenOf(agentId: number): string | null {
    const conn = this.o.registry.connections(agentId).at(-1);
    return conn?.agentToken?.() ?? null;
  }

  private async poll(w: Watch): Promise<void> {
    if (!this.running || w.removed) return;
    if (w.polling) {
      w.again = true;
      return;
    }
    if (w.timer) clearTimeout(w.timer);
    w.timer = null;
    w.polling = true;
    let delay = this.o.pollPeriodMs;
    try {
      delay = await this.pollOnce(w);
    } catch (err) {
      this.o.logger.error({ err, agentId: w.agentId, projectId: w.id }, 'manifest poll failed');
    } finally {
      w.polling = false;
    }
    if (!this.running || w.removed) return;
    if (w.again) {
      w.again = false;
      void this.poll(w);
      return;
    }
    w.timer = setTimeout(() => void this.poll(w), delay * (0.9 + Math.random() * 0.2));
    w.timer.unref();
  }

  /** One read; returns the delay until the next. */
  private async pollOnce(w: Watch): Promise<number> {
    const { metrics, logger } = this.o;
    const log = logger.child({ agentId: w.agentId, projectId: w.id });
    const spec = w.spec;
    const started = process.hrtime.bigint();
    try {
      const result = await this.o.source.read({ agentId: w.agentId, token: this.tokenOf(w.agentId) }, spec, w.problem ? undefined : w.read?.commit);
      if (w.removed || w.spec !== spec) return this.o.pollPeriodMs;
      w.failures = 0;
      if (result.pushId !== null) w.pushId = result.pushId;
      if (!result.snapshot) {
        metrics.polls.inc({ result: 'unchanged' });
        return this.o.pollPeriodMs;
      }
      metrics.polls.inc({ result: 'changed' });
      metrics.readSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
      for (const e of result.snapshot.errors) metrics.errors.inc({ code: e.code });
      w.read = result.snapshot;
      w.problem = null;
      const s = result.snapshot;
      if (s.errors.length > 0) log.warn({ commit: s.commit, errors: s.errors.slice(0, 10), files: s.files.length }, 'the manifest project was read with problems; the snapshot is incomplete');
      else log.info({ commit: s.commit, files: s.files.length, bytes: s.bytes }, 'new commit of the manifest project');
      this.publish(w);
      return this.o.pollPeriodMs;
    } catch (err) {
      if (w.removed || w.spec !== spec) return this.o.pollPeriodMs;
      if (err instanceof ManifestProblemError) {
        metrics.polls.inc({ result: 'changed' });
        metrics.errors.inc({ code: err.code });
        log.warn({ code: err.code, error: err.message }, 'the manifest project cannot be read');
        this.setProblem(w, [err.problem]);
        return this.o.pollPeriodMs;
      }
      metrics.polls.inc({ result: 'failed' });
      metrics.errors.inc({ code: 'MANIFEST_SOURCE_FAILED' });
      w.failures++;
      log.warn({ err, failures: w.failures }, 'could not read the manifest project; the last snapshot stays');
      // Before the first snapshot, agentk is told why nothing comes.
      if (!w.read && !w.problem) this.setProblem(w, [{ code: 'MANIFEST_SOURCE_FAILED', message: (err as Error).message.slice(0, 1000) }]);
      return Math.min(this.o.pollPeriodMs, RETRY_BASE_MS * 2 ** Math.min(w.failures - 1, 10));
    }
  }

  private setProblem(w: Watch, problems: ManifestProblem[]): void {
    const same = w.problem && JSON.stringify(w.problem) === JSON.stringify(problems);
    w.problem = problems;
    w.read = null;
    if (!same) this.publish(w);
  }

  /** Makes the watch's snapshot from what it read and its settings, and tells its streams. */
  private publish(w: Watch): void {
    if (w.problem) {
      w.snapshot = { commit: '', settings: w.settings, settingsDigest: w.settingsDigest, complete: false, errors: w.problem, files: [], bytes: 0 };
    } else if (w.read) {
      const r = w.read;
      w.snapshot = { commit: r.commit, settings: w.settings, settingsDigest: w.settingsDigest, complete: r.complete, errors: r.errors, files: r.files, bytes: r.bytes };
    } else {
      return;
    }
    for (const l of [...w.listeners]) l.changed();
  }
}
