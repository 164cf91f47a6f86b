/**
 * The GitOps feature, agentk side, receiving half: follows one manifest project over a
 * `gitops_manifests` stream towards kas (src/protocol/gitops.ts) and hands each complete snapshot
 * of its files to the applier. kas reads, polls and bounds the project; agentk still checks every
 * record and bound (a bug in kas must not make agentk hold more than one snapshot of at most
 * 20 MiB). The stream is reopened with backoff after it is lost and resumes by commit: the OPEN head
 * names the commit agentk has, and kas sends nothing until the project moves on.
 *
 * Which projects to follow comes from the `gitops` section of the agent configuration kas sends
 * (`parseGitopsSection`, with `ctx.configuration.subscribe('gitops', ...)`).
 */
import { TunnelError, isTunnelError } from '../../protocol/errors.js';
import type { AgentConfigDocument } from '../../protocol/agent-config.js';
import {
  ManifestRecordDecoder,
  SnapshotAssembler,
  decodeManifestReplyHead,
  encodeManifestOpenHead,
  type ManifestSettingsWire,
  type ReceivedSnapshot,
} from '../../protocol/gitops.js';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import { Backoff, type BackoffOptions } from '../tunnel/backoff.js';
import { KasStreamsStoppedError, type KasStreams } from '../tunnel/kas-streams.js';

export interface ManifestSettings {
  defaultNamespace: string;
  reconcileTimeoutMs: number;
  dryRunStrategy: 'none' | 'client' | 'server';
  prune: boolean;
  pruneTimeoutMs: number;
  prunePropagationPolicy: 'orphan' | 'background' | 'foreground';
  inventoryPolicy: 'must_match' | 'adopt_if_no_inventory' | 'adopt_all';
}

export interface ManifestSnapshot {
  projectId: string;
  /** The commit the files were read at; '' when kas could read nothing (then `errors` say why and `files` is empty). */
  commit: string;
  settings: ManifestSettings;
  /** False when a matching file is missing (a limit, an unreadable file, a refused project): never prune then. */
  complete: boolean;
  errors: Array<{ code: string; message: string; path?: string }>;
  /** Distinct relative paths, in kas's order (sorted by path). */
  files: Array<{ path: string; data: Buffer }>;
}

export interface FollowOptions {
  /** The commit agentk already has (applied before a restart): kas sends nothing until the project moves on. */
  lastCommit?: string;
  signal: AbortSignal;
  logger: Logger;
  /** Called with each snapshot, one at a time; the stream is not read meanwhile. A rejection is logged and the commit is asked for again after the next reconnect. */
  onSnapshot: (s: ManifestSnapshot) => Promise<void>;
  /** Delays between reopens (defaults: 1 s base, 30 s cap, reset after 60 s up). */
  backoff?: Partial<BackoffOptions>;
}

/** The manifest projects named by the `gitops` section kas sent: ids in order, without duplicates. */
export function parseGitopsSection(section: AgentConfigDocument['gitops'] | undefined): string[] {
  const out: string[] = [];
  for (const p of section?.manifest_projects ?? []) {
    if (typeof p.id === 'string' && p.id !== '' && !out.includes(p.id)) out.push(p.id);
  }
  return out;
}

function settingsOf(w: ManifestSettingsWire): ManifestSettings {
  return {
    defaultNamespace: w.default_namespace,
    reconcileTimeoutMs: w.reconcile_timeout,
    dryRunStrategy: w.dry_run_strategy,
    prune: w.prune,
    pruneTimeoutMs: w.prune_timeout,
    prunePropagationPolicy: w.prune_propagation_policy,
    inventoryPolicy: w.inventory_policy,
  };
}

function toSnapshot(projectId: string, r: ReceivedSnapshot): ManifestSnapshot {
  return {
    projectId,
    commit: r.header.commit,
    settings: settingsOf(r.header.settings),
    complete: r.header.complete,
    errors: r.header.errors.map((e) => ({ ...e })),
    files: r.files.map((f) => ({ path: f.path, data: Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength) })),
  };
}

function abortable(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Keeps a `gitops_manifests` stream open for `projectId`, calling `onSnapshot` for every snapshot
 * kas sends, and reopens it with backoff when it is lost or refused. Resolves when `signal` aborts
 * (or agentk stops); never rejects.
 */
export async function followManifestProject(kas: KasStreams, projectId: string, options: FollowOptions): Promise<void> {
  const { signal, logger } = options;
  const backoff = new Backoff({ baseMs: 1000, capMs: 30_000, resetAfterMs: 60_000, ...options.backoff });
  const state: { commit?: string; digest?: string } = { commit: options.lastCommit };
  while (!signal.aborted) {
    let stream: TunnelStream;
    try {
      stream = await kas.open(encodeManifestOpenHead({ projectId, commit: state.commit, settingsDigest: state.commit === undefined ? undefined : state.digest }), { end: true, signal });
    } catch (err) {
      if (signal.aborted || err instanceof KasStreamsStoppedError) return;
      logger.warn({ err, projectId }, 'could not open a gitops_manifests stream; trying again');
      await abortable(backoff.next(), signal);
      continue;
    }
    const openedAt = Date.now();
    try {
      await receive(stream, projectId, state, options);
      if (!signal.aborted) logger.info({ projectId }, 'kas ended the gitops_manifests stream; reopening');
    } catch (err) {
      if (signal.aborted) return;
      if (isTunnelError(err) && err.code === 'PROTOCOL_ERROR') {
        logger.error({ err, projectId }, 'kas sent an invalid gitops_manifests message; the stream is reset');
        stream.reset('PROTOCOL_ERROR', err.message.slice(0, 512));
      } else {
        logger.info({ err, projectId }, 'the gitops_manifests stream was lost; reopening');
      }
    }
    backoff.connectionEnded(Date.now() - openedAt);
    if (!stream.destroyed) stream.destroy();
    await abortable(backoff.next(), signal);
  }
}

async function receive(stream: TunnelStream, projectId: string, state: { commit?: string; digest?: string }, options: FollowOptions): Promise<void> {
  const { signal, logger } = options;
  const onAbort = () => stream.reset('CANCELLED', 'agentk stopped following the project');
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const reply = decodeManifestReplyHead(await replyOf(stream));
    if (!reply.accepted) {
      logger.warn({ projectId, reason: reply.reason }, 'kas refused to send the manifests of the project');
      stream.resume();
      return;
    }
    const decoder = new ManifestRecordDecoder();
    const assembler = new SnapshotAssembler();
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      for (const record of decoder.push(chunk)) {
        const done = assembler.take(record);
        if (!done) continue;
        const snapshot = toSnapshot(projectId, done);
        logger.info({ projectId, commit: snapshot.commit, files: snapshot.files.length, complete: snapshot.complete, errors: snapshot.errors.length }, 'received a manifest snapshot');
        try {
          await options.onSnapshot(snapshot);
          if (snapshot.commit !== '') {
            state.commit = snapshot.commit;
            state.digest = done.header.settingsDigest;
          }
        } catch (err) {
          logger.error({ err, projectId, commit: snapshot.commit }, 'the manifest snapshot was not taken; it is asked for again after a reconnect');
        }
        if (signal.aborted) return;
      }
    }
    if (!decoder.idle || !assembler.idle) throw new TunnelError('PROTOCOL_ERROR', 'invalid gitops_manifests message: the stream ended inside a snapshot');
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
