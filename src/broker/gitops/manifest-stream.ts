/**
 * Serves the `gitops_manifests` streams agentk opens (src/protocol/gitops.ts): checks the head,
 * refuses a project the agent's configuration (as this kas has it) does not name, and then writes
 * each new snapshot of the project's watch as records, with flow control: while agentk does not
 * read, nothing more is written, and only the newest snapshot is sent once it reads again. A snapshot
 * whose commit (and settings digest, when agentk gave one) is what agentk already has is skipped:
 * that is how a reconnect resumes.
 */
import { once } from 'node:events';
import { decodeManifestOpenHead, encodeEndRecord, encodeFileRecord, encodeManifestReplyHead, encodeSnapshotHeader, type ManifestOpenHead } from '../../protocol/gitops.js';
import { isTunnelError } from '../../protocol/errors.js';
import type { TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentConnection } from '../tunnel/agent-registry.js';
import type { GitopsMetrics } from './metrics.js';
import type { ManifestPoller, Snapshot, Subscription } from './poller.js';

export function serveManifestStream(poller: ManifestPoller, metrics: GitopsMetrics, stream: TunnelStream, connection: AgentConnection, baseLogger: Logger): void {
  let head: ManifestOpenHead;
  try {
    head = decodeManifestOpenHead(stream.peerHead ?? {});
  } catch (err) {
    baseLogger.warn({ err, streamId: stream.id }, 'invalid gitops_manifests head');
    stream.reset('PROTOCOL_ERROR', (err as Error).message.slice(0, 512));
    return;
  }
  const agentId = connection.identity.agentId;
  const logger = baseLogger.child({ projectId: head.projectId, streamId: stream.id });
  // agentk sends nothing after its head; reading lets its end arrive.
  stream.resume();
  let writing = false;
  let pending = false;
  let closed = false;
  let sent: Snapshot | null = null;
  const have = { commit: head.commit, digest: head.settingsDigest };
  let sub: Subscription | null = null;

  const finish = () => {
    if (closed) return;
    closed = true;
    sub?.detach();
    metrics.streams.dec();
  };

  const upToDate = (s: Snapshot) => s === sent || (s.commit !== '' && s.commit === have.commit && (have.digest === undefined || have.digest === s.settingsDigest));

  const write = async (chunk: Buffer) => {
    if (closed) throw new Error('stream closed');
    if (!stream.write(chunk)) {
      await Promise.race([once(stream, 'drain'), once(stream, 'close')]);
      if (closed) throw new Error('stream closed');
    }
  };

  const send = async (s: Snapshot) => {
    await write(encodeSnapshotHeader({ commit: s.commit, settings: s.settings, settingsDigest: s.settingsDigest, complete: s.complete, errors: s.errors, files: s.files.length, bytes: s.bytes }));
    for (const f of s.files) await write(encodeFileRecord(f));
    await write(encodeEndRecord(s.commit));
  };

  const pump = async () => {
    if (writing) {
      pending = true;
      return;
    }
    writing = true;
    try {
      do {
        pending = false;
        const s = sub?.current() ?? null;
        if (!s || closed || upToDate(s)) continue;
        logger.debug({ commit: s.commit, files: s.files.length }, 'sending a manifest snapshot');
        await send(s);
        sent = s;
        have.commit = s.commit;
        have.digest = s.settingsDigest;
        metrics.snapshotsSent.inc();
        logger.info({ commit: s.commit, files: s.files.length, bytes: s.bytes, complete: s.complete }, 'sent a manifest snapshot to agentk');
      } while (pending && !closed);
    } catch (err) {
      if (!closed) logger.warn({ err }, 'could not send the manifest snapshot');
    } finally {
      writing = false;
    }
  };

  stream.on('close', finish);
  stream.on('error', (err) => {
    if (!(isTunnelError(err) && ['CANCELLED', 'SESSION_CLOSED', 'CONNECTION_LOST', 'GOING_AWAY'].includes(err.code))) logger.debug({ err }, 'gitops_manifests stream failed');
    finish();
  });
  metrics.streams.inc();

  sub = poller.attach(agentId, head.projectId, {
    changed: () => void pump(),
    gone: () => {
      logger.info('the manifest project left the agent configuration; ending its stream');
      sub = null;
      if (!closed) stream.end();
    },
  });
  if (!sub) {
    logger.info('agentk asked for a manifest project its configuration does not name here; refused');
    stream.reply(encodeManifestReplyHead({ accepted: false, reason: `the agent configuration (as this kas has it) names no manifest project ${JSON.stringify(head.projectId.slice(0, 200))}` }), { end: true });
    return;
  }
  stream.reply(encodeManifestReplyHead({ accepted: true }));
  void pump();
}
