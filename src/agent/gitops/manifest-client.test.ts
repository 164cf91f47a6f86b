/** agentk's manifest client against a scripted kas over an in-memory session pair. */
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import type { TunnelStream } from '../../protocol/stream.js';
import { encodeEndRecord, encodeFileRecord, encodeManifestReplyHead, encodeSnapshotHeader, GITOPS_MANIFESTS_STREAM, type ManifestSettingsWire } from '../../protocol/gitops.js';
import type { Head } from '../../protocol/frames.js';
import { createLogger } from '../../shared/logger.js';
import { LogCapture } from '../../../test/support/logs.js';
import { waitFor } from '../../../test/support/wait.js';
import { KasStreams } from '../tunnel/kas-streams.js';
import { followManifestProject, parseGitopsSection, type ManifestSnapshot } from './manifest-client.js';

const settings: ManifestSettingsWire = { default_namespace: 'apps', reconcile_timeout: 1000, dry_run_strategy: 'client', prune: false, prune_timeout: 2000, prune_propagation_policy: 'orphan', inventory_policy: 'adopt_all' };

function snapshot(commit: string, files: Array<[string, string]>, digest = 'd1'): Buffer {
  const bytes = files.reduce((n, [, d]) => n + Buffer.byteLength(d), 0);
  return Buffer.concat([
    encodeSnapshotHeader({ commit, settings, settingsDigest: digest, complete: true, errors: [], files: files.length, bytes }),
    ...files.map(([path, data]) => encodeFileRecord({ path, data: Buffer.from(data) })),
    encodeEndRecord(commit),
  ]);
}

describe('followManifestProject', () => {
  let server: Session;
  let client: Session;
  let kas: KasStreams;
  const opened: Array<{ head: Head; stream: TunnelStream }> = [];
  let onStream: (stream: TunnelStream, n: number) => void;

  beforeEach(async () => {
    opened.length = 0;
    const [a, b] = createMemoryTransportPair();
    server = new Session(a, { role: 'server', welcome: { connectionId: 'c1', features: [GITOPS_MANIFESTS_STREAM] } });
    client = new Session(b, { role: 'client' });
    server.on('stream', (stream: TunnelStream) => {
      opened.push({ head: stream.peerHead!, stream });
      stream.resume();
      onStream(stream, opened.length);
    });
    const welcome = await client.ready;
    kas = new KasStreams();
    kas.added(client, welcome);
  });

  afterEach(() => {
    kas.stop();
    client.close();
    server.close();
  });

  function start(lastCommit?: string) {
    const got: ManifestSnapshot[] = [];
    const logs = new LogCapture();
    const controller = new AbortController();
    const done = followManifestProject(kas, 'group/manifests', {
      lastCommit,
      signal: controller.signal,
      logger: createLogger({ name: 't', level: 'debug', destination: logs }),
      backoff: { baseMs: 10, capMs: 20 },
      onSnapshot: (s) => {
        got.push(s);
        return Promise.resolve();
      },
    });
    return { got, logs, done, stop: () => controller.abort() };
  }

  test('receives snapshots, and reopens a lost stream with the commit and digest it has', async () => {
    onStream = (stream, n) => {
      stream.reply(encodeManifestReplyHead({ accepted: true }));
      if (n === 1) {
        stream.write(snapshot('c1', [['a.yaml', 'kind: A\n'], ['b/c.json', '{}']]));
        setTimeout(() => stream.end(), 20);
      }
    };
    const f = start('c0');
    await waitFor(() => opened.length === 2, 'the stream to be reopened');
    expect(opened[0]!.head).toEqual({ t: GITOPS_MANIFESTS_STREAM, project_id: 'group/manifests', commit: 'c0' });
    expect(opened[1]!.head).toEqual({ t: GITOPS_MANIFESTS_STREAM, project_id: 'group/manifests', commit: 'c1', settings_digest: 'd1' });
    expect(f.got).toHaveLength(1);
    expect(f.got[0]).toEqual({
      projectId: 'group/manifests',
      commit: 'c1',
      settings: { defaultNamespace: 'apps', reconcileTimeoutMs: 1000, dryRunStrategy: 'client', prune: false, pruneTimeoutMs: 2000, prunePropagationPolicy: 'orphan', inventoryPolicy: 'adopt_all' },
      complete: true,
      errors: [],
      files: [
        { path: 'a.yaml', data: Buffer.from('kind: A\n') },
        { path: 'b/c.json', data: Buffer.from('{}') },
      ],
    });
    f.stop();
    await f.done;
  });

  test('a hostile record resets the stream with PROTOCOL_ERROR; nothing is handed over and the commit is kept', async () => {
    const resets: string[] = [];
    onStream = (stream, n) => {
      stream.on('error', (err: Error & { code?: string }) => resets.push(String(err.code)));
      stream.reply(encodeManifestReplyHead({ accepted: true }));
      if (n === 1) {
        // Two files with the same path.
        stream.write(Buffer.concat([encodeSnapshotHeader({ commit: 'c1', settings, settingsDigest: 'd', complete: true, errors: [], files: 2, bytes: 2 }), encodeFileRecord({ path: 'a.yaml', data: Buffer.from('x') }), encodeFileRecord({ path: 'a.yaml', data: Buffer.from('y') })]));
      }
      if (n === 2) {
        // A length prefix of 4 GiB: refused before anything is buffered.
        stream.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
      }
    };
    const f = start('c0');
    await waitFor(() => opened.length >= 3, 'two resets and a third stream');
    expect(resets.slice(0, 2)).toEqual(['PROTOCOL_ERROR', 'PROTOCOL_ERROR']);
    expect(f.got).toEqual([]);
    expect(opened[2]!.head.commit).toBe('c0');
    expect(f.logs.text).toContain('kas sent an invalid gitops_manifests message');
    f.stop();
    await f.done;
  });

  test('a refusal is retried with backoff; aborting resolves', async () => {
    onStream = (stream) => stream.reply(encodeManifestReplyHead({ accepted: false, reason: 'not in the configuration' }), { end: true });
    const f = start();
    await waitFor(() => opened.length >= 3, 'the refused stream to be tried again');
    expect(opened[0]!.head).toEqual({ t: GITOPS_MANIFESTS_STREAM, project_id: 'group/manifests' });
    expect(f.logs.text).toContain('not in the configuration');
    f.stop();
    await expect(f.done).resolves.toBeUndefined();
  });

  test('a failed onSnapshot does not move the commit', async () => {
    let calls = 0;
    onStream = (stream, n) => {
      stream.reply(encodeManifestReplyHead({ accepted: true }));
      if (n === 1) {
        stream.write(snapshot('c1', [['a.yaml', 'x']]));
        setTimeout(() => stream.end(), 20);
      }
    };
    const controller = new AbortController();
    const done = followManifestProject(kas, 'p', {
      signal: controller.signal,
      logger: createLogger({ name: 't', level: 'silent' }),
      backoff: { baseMs: 10, capMs: 20 },
      onSnapshot: () => {
        calls++;
        return Promise.reject(new Error('applier broke'));
      },
    });
    await waitFor(() => opened.length >= 2, 'the reopened stream');
    expect(calls).toBe(1);
    expect(opened[1]!.head.commit).toBeUndefined();
    controller.abort();
    await done;
  });
});

describe('parseGitopsSection', () => {
  test('ids in order, without duplicates or entries without id', () => {
    expect(parseGitopsSection(undefined)).toEqual([]);
    expect(parseGitopsSection({ manifest_projects: [{ id: 'a' }, { id: 'b' }, { id: 'a' }, {}, { id: '' }] })).toEqual(['a', 'b']);
  });
});
