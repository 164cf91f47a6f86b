/**
 * GitOps manifests end to end, up to agentk's receiving client: a real kas polls manifest projects
 * (standalone: a real Git repository made by the test and a local folder; GitLab mode: the fake
 * GitLab) and a real agentk follows them with `followManifestProject` over `gitops_manifests`
 * streams. A git push notification polls at once; an unchanged commit is not sent again; a reconnect
 * resumes by commit; a project the agent may not read is refused and reported.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { followManifestProject, parseGitopsSection, type ManifestSnapshot } from '../../src/agent/gitops/manifest-client.js';
import { REPLICA_STATE } from '../../src/broker/replicas/service.js';
import { createLogger } from '../../src/shared/logger.js';
import { gitlabToKasJwt, startFakeGitLab, type FakeGitLab } from '../support/fake-gitlab.js';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { TestGitRepo } from '../support/git-repo.js';
import { LogCapture } from '../support/logs.js';
import { readAll } from '../support/streams.js';
import { startStack, type Stack } from '../support/stack.js';
import { waitFor } from '../support/wait.js';

async function metricValue(stack: Stack, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = stack.kas.metrics.getSingleMetric(name);
  if (!metric) throw new Error(`kas has no metric ${name}`);
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((sum, v) => sum + v.value, 0);
}

function gitPush(stack: Stack, secret: Buffer, projectId: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(JSON.stringify({ project: { id: projectId, full_path: 'demo/manifests' } }));
    const req = http.request(`http://${stack.kas.addresses.api}/api/v1/git_push_event`, { method: 'POST', agent: false, headers: { authorization: `Bearer ${gitlabToKasJwt(secret)}`, 'content-type': 'application/json', 'content-length': String(body.length) } }, (res) => {
      readAll(res).then(() => resolve(res.statusCode ?? 0), reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Follows a project from the stack's agentk, collecting snapshots. */
function follow(stack: Stack, projectId: string, lastCommit?: string) {
  const snapshots: ManifestSnapshot[] = [];
  const controller = new AbortController();
  const logs = new LogCapture();
  const done = followManifestProject(stack.agent!.kas, projectId, {
    lastCommit,
    signal: controller.signal,
    logger: createLogger({ name: 'follow', level: 'debug', destination: logs }),
    backoff: { baseMs: 50, capMs: 300 },
    onSnapshot: (s) => {
      snapshots.push(s);
      return Promise.resolve();
    },
  });
  return {
    snapshots,
    logs,
    last: () => snapshots.at(-1),
    async stop() {
      controller.abort();
      await done;
    },
  };
}

const text = (s: ManifestSnapshot | undefined) => Object.fromEntries((s?.files ?? []).map((f) => [f.path, f.data.toString()]));

describe('GitOps manifests, standalone mode (a real Git repository and a folder)', () => {
  let upstream: FakeKubeApi;
  let stack: Stack;
  let dir: string;
  let repo: TestGitRepo;
  let folder: string;
  const secret = randomBytes(32);
  let c1: string;

  beforeAll(async () => {
    upstream = await startFakeKubeApi();
    dir = mkdtempSync(join(tmpdir(), 'gitops-it-'));
    repo = new TestGitRepo(join(dir, 'repo'));
    c1 = repo.commit({ 'manifests/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n', 'manifests/.draft/x.yaml': 'hidden', 'README.md': 'docs' });
    folder = join(dir, 'folder');
    mkdirSync(folder);
    writeFileSync(join(folder, 'ns.yaml'), 'kind: Namespace\n');
    mkdirSync(join(dir, 'configs', 'agent-one'), { recursive: true });
    writeFileSync(
      join(dir, 'configs', 'agent-one', 'config.yaml'),
      [
        'gitops:',
        '  manifest_projects:',
        '    - id: demo/manifests',
        '      default_namespace: apps',
        '      prune_propagation_policy: background',
        '      reconcile_timeout: 90s',
        '      paths:',
        '        - glob: "/manifests/**/*.yaml"',
        '    - id: demo/folder',
        '      dry_run_strategy: server',
        '    - id: demo/unknown',
        '',
      ].join('\n'),
    );
    writeFileSync(join(dir, 'api.secret'), secret.toString('base64'));
    stack = await startStack({
      upstream,
      kas: {
        api: { listen: { address: '127.0.0.1:0', authentication_secret_file: join(dir, 'api.secret') } },
        agent: { gitops: { poll_period: '1h', cache_dir: join(dir, 'cache') }, configuration: { poll_period: '1h' } },
        standalone: {
          config_dir: join(dir, 'configs'),
          manifest_projects: [
            { id: 'demo/manifests', project_id: 42, git: { url: repo.dir } },
            { id: 'demo/folder', project_id: 43, directory: folder },
          ],
        },
      },
    });
  });

  afterAll(async () => {
    await stack?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('agentk learns the projects from its configuration', async () => {
    let ids: string[] = [];
    const off = stack.agent!.configuration.subscribe('gitops', (section) => {
      ids = parseGitopsSection(section);
    });
    await waitFor(() => ids.length === 3, 'agentk to receive the gitops section');
    off();
    expect(ids).toEqual(['demo/manifests', 'demo/folder', 'demo/unknown']);
  });

  test('snapshots of a git project: first commit, a push polls at once, an unchanged commit is not resent, a reconnect resumes by commit', async () => {
    const f = follow(stack, 'demo/manifests');
    try {
      await waitFor(() => f.snapshots.length >= 1, 'the first snapshot');
      const first = f.snapshots[0]!;
      expect(first).toMatchObject({ projectId: 'demo/manifests', commit: c1, complete: true, errors: [] });
      expect(first.settings).toEqual({ defaultNamespace: 'apps', reconcileTimeoutMs: 90_000, dryRunStrategy: 'none', prune: true, pruneTimeoutMs: 3_600_000, prunePropagationPolicy: 'background', inventoryPolicy: 'must_match' });
      expect(text(first)).toEqual({ 'manifests/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n' });

      // A push (poll period is 1 h): the new commit arrives.
      const c2 = repo.commit({ 'manifests/cm.yaml': 'kind: ConfigMap\nmetadata: {name: two}\n', 'manifests/apps/deploy.yaml': 'kind: Deployment\n' });
      expect(await gitPush(stack, secret, 42)).toBe(204);
      await waitFor(() => f.last()?.commit === c2, 'the pushed commit to arrive');
      expect(Object.keys(text(f.last()))).toEqual(['manifests/apps/deploy.yaml', 'manifests/cm.yaml']);

      // A push without a new commit: kas polls, finds the same commit, sends nothing.
      const unchanged = await metricValue(stack, 'kas_gitops_polls_total', { result: 'unchanged' });
      expect(await gitPush(stack, secret, 42)).toBe(204);
      await waitFor(async () => (await metricValue(stack, 'kas_gitops_polls_total', { result: 'unchanged' })) > unchanged, 'kas to poll the unchanged project');
      expect(f.snapshots.map((s) => s.commit)).toEqual([c1, c2]);

      // The agent's sessions drop: agentk reconnects, reopens with commit c2 and gets nothing more...
      const sent = await metricValue(stack, 'kas_gitops_snapshots_sent_total');
      for (const c of stack.kas.registry.connections(1)) c.session.close();
      await waitFor(() => f.logs.text.includes('reopening'), 'the follower to notice the lost stream');
      await waitFor(async () => (await metricValue(stack, 'kas_gitops_streams')) >= 1 && stack.kas.registry.connections(1).length > 0, 'the stream to be reopened');
      // ...until the project moves on.
      const c3 = repo.commit({ 'manifests/apps/deploy.yaml': null });
      expect(await gitPush(stack, secret, 42)).toBe(204);
      await waitFor(() => f.last()?.commit === c3, 'the commit after the reconnect');
      expect(f.snapshots.map((s) => s.commit)).toEqual([c1, c2, c3]);
      expect(await metricValue(stack, 'kas_gitops_snapshots_sent_total')).toBeGreaterThan(sent);

      // A follower that starts with the current commit (agentk restarted) gets nothing until a new one.
      const g = follow(stack, 'demo/manifests', c3);
      try {
        const c4 = repo.commit({ 'manifests/more.yaml': 'kind: Service\n' });
        expect(await gitPush(stack, secret, 42)).toBe(204);
        await waitFor(() => g.last()?.commit === c4, 'the resumed follower to get only the new commit');
        expect(g.snapshots.map((s) => s.commit)).toEqual([c4]);
      } finally {
        await g.stop();
      }
    } finally {
      await f.stop();
    }
  });

  test('a folder project: the commit is a digest of its files; a push reads it again', async () => {
    const f = follow(stack, 'demo/folder');
    try {
      await waitFor(() => f.snapshots.length >= 1, 'the folder snapshot');
      const first = f.snapshots[0]!;
      expect(first.commit).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(first.settings.dryRunStrategy).toBe('server');
      expect(text(first)).toEqual({ 'ns.yaml': 'kind: Namespace\n' });
      writeFileSync(join(folder, 'cm.json'), '{"kind":"ConfigMap"}');
      expect(await gitPush(stack, secret, 43)).toBe(204);
      await waitFor(() => f.snapshots.length >= 2, 'the changed folder');
      expect(Object.keys(text(f.last()))).toEqual(['cm.json', 'ns.yaml']);
      expect(f.last()!.commit).not.toBe(first.commit);
    } finally {
      await f.stop();
    }
  });

  test('a project with no source is reported to agentk; a project not in the configuration is refused', async () => {
    const f = follow(stack, 'demo/unknown');
    const g = follow(stack, 'not/configured');
    try {
      await waitFor(() => f.snapshots.length >= 1, 'the problem snapshot');
      expect(f.snapshots[0]).toMatchObject({ commit: '', complete: false, files: [], errors: [{ code: 'MANIFEST_PROJECT_NOT_FOUND' }] });
      await waitFor(() => g.logs.text.includes('kas refused to send the manifests of the project'), 'kas to refuse the project');
      expect(g.snapshots).toEqual([]);
      expect(await metricValue(stack, 'kas_gitops_errors_total', { code: 'MANIFEST_PROJECT_NOT_FOUND' })).toBeGreaterThanOrEqual(1);
    } finally {
      await f.stop();
      await g.stop();
    }
  });
});

describe('GitOps manifests, GitLab mode (the fake GitLab)', () => {
  const PROJECT = 7;
  const MANIFESTS = 20;
  const FORBIDDEN = 21;
  const AGENT_TOKEN = 'glagent-gitops-test-token-0000000000000000000000000000';
  let gl: FakeGitLab;
  let upstream: FakeKubeApi;
  let stack: Stack;

  beforeAll(async () => {
    gl = await startFakeGitLab();
    gl.addAgent({ id: 1, name: 'prod', projectId: PROJECT, token: AGENT_TOKEN });
    gl.addProject({ id: MANIFESTS, fullPath: 'acme/manifests' });
    gl.addProject({ id: FORBIDDEN, fullPath: 'acme/secret' });
    gl.allowAgentProject(1, MANIFESTS);
    gl.setFile(MANIFESTS, 'main', 'deploy/app.yaml', 'kind: Deployment\n');
    gl.setFile(FORBIDDEN, 'main', 'x.yaml', 'kind: Secret\n');
    gl.setFile(PROJECT, 'main', 'cluster/cm.yaml', 'kind: ConfigMap\n');
    gl.setFile(PROJECT, 'main', '.gitlab/agents/prod/config.yaml', 'gitops:\n  manifest_projects:\n    - id: acme/manifests\n    - id: acme/secret\n    - paths:\n        - glob: "cluster/*.yaml"\n');
    upstream = await startFakeKubeApi();
    stack = await startStack({
      upstream,
      gitlab: { url: gl.url, caPem: gl.caPem, secretFileContent: gl.secretFileContent, repositoryToken: gl.repositoryToken, agentToken: AGENT_TOKEN },
      kas: { agent: { gitops: { poll_period: '1h' }, configuration: { poll_period: '1h' } } },
    });
  });

  afterAll(async () => {
    await stack?.close();
    await upstream?.close();
    await gl?.close();
  });

  test('the readable project and the configuration project arrive; the forbidden one is refused and reported', async () => {
    let ids: string[] = [];
    const off = stack.agent!.configuration.subscribe('gitops', (section) => {
      ids = parseGitopsSection(section);
    });
    await waitFor(() => ids.length === 3, 'agentk to receive the gitops section');
    off();
    // The entry without id is the configuration project, named by its number.
    expect(ids).toEqual(['acme/manifests', 'acme/secret', String(PROJECT)]);
    const a = follow(stack, 'acme/manifests');
    const b = follow(stack, 'acme/secret');
    const c = follow(stack, String(PROJECT));
    try {
      await waitFor(() => a.snapshots.length > 0 && b.snapshots.length > 0 && c.snapshots.length > 0, 'a snapshot of every project');
      expect(a.snapshots[0]).toMatchObject({ commit: gl.headCommit(MANIFESTS, 'main'), complete: true });
      expect(text(a.snapshots[0])).toEqual({ 'deploy/app.yaml': 'kind: Deployment\n' });
      expect(b.snapshots[0]).toMatchObject({ commit: '', complete: false, files: [], errors: [{ code: 'MANIFEST_PROJECT_FORBIDDEN' }] });
      expect(text(c.snapshots[0])).toEqual({ 'cluster/cm.yaml': 'kind: ConfigMap\n' });
      expect(gl.callsTo(/\/projects\/21\/repository\//)).toHaveLength(0);
      expect(stack.kasLogs.text).toContain('the manifest project cannot be read');
      expect(stack.kasLogs.text).not.toContain(AGENT_TOKEN);
      // A push to GitLab's project number polls it at once.
      const next = gl.setFile(MANIFESTS, 'main', 'deploy/app.yaml', 'kind: Deployment\nspec: {}\n');
      await stack.kas.service(REPLICA_STATE)!.gitPush.publish(MANIFESTS);
      await waitFor(() => a.last()?.commit === next, 'the pushed commit');
      expect(text(a.last())).toEqual({ 'deploy/app.yaml': 'kind: Deployment\nspec: {}\n' });
    } finally {
      await Promise.all([a.stop(), b.stop(), c.stop()]);
    }
  });
});
