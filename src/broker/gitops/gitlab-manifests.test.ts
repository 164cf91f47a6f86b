/** The GitLab manifest source with the real GitLab client against the fake GitLab of test/support. */
import { startFakeGitLab, type FakeGitLab } from '../../../test/support/fake-gitlab.js';
import { GitLabClient } from '../gitlab/client.js';
import { GitLabManifests } from './gitlab-manifests.js';
import { ManifestProblemError, type ManifestProjectSpec } from './manifest-source.js';

const CONFIG_PROJECT = 7;
const MANIFESTS = 20;
const AGENT = { id: 3, name: 'edge', projectId: CONFIG_PROJECT, token: 'glagent-edge-token-000000000000000000000000000000000000' };
const reader = { agentId: AGENT.id, token: AGENT.token };
const spec = (ref?: ManifestProjectSpec['ref'], globs = ['**/*.{yaml,yml,json}']): ManifestProjectSpec => ({ id: 'acme/manifests', ref, globs });

describe('GitLabManifests', () => {
  let gl: FakeGitLab;
  let client: GitLabClient;

  beforeAll(async () => {
    gl = await startFakeGitLab();
    gl.addAgent(AGENT);
    gl.addProject({ id: MANIFESTS, fullPath: 'acme/manifests' });
    client = new GitLabClient({ address: gl.url, secret: gl.secret, repositoryToken: gl.repositoryToken, attempts: 1 });
  });

  afterAll(async () => {
    client?.close();
    await gl?.close();
  });

  beforeEach(() => {
    gl.calls.length = 0;
  });

  const source = (o: Partial<ConstructorParameters<typeof GitLabManifests>[0]> = {}) => new GitLabManifests({ client, infoCacheTtlMs: 60_000, infoCacheErrorTtlMs: 0, ...o });

  test('a project the agent may not read is refused (and the refusal is cached for the error TTL)', async () => {
    gl.setFile(MANIFESTS, 'main', 'cm.yaml', 'kind: ConfigMap\n');
    const s = source({ infoCacheErrorTtlMs: 60_000 });
    for (let i = 0; i < 2; i++) {
      const err = await s.read(reader, spec(), undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ManifestProblemError);
      expect((err as ManifestProblemError).code).toBe('MANIFEST_PROJECT_FORBIDDEN');
    }
    expect(gl.callsTo('/internal/kubernetes/project_info')).toHaveLength(1);
    expect(gl.callsTo(/\/repository\//)).toHaveLength(0);
    const call = gl.callsTo('/internal/kubernetes/project_info')[0]!;
    expect(call.query.id).toBe('acme/manifests');
    expect(call.headers.authorization).toBe(`Bearer ${AGENT.token}`);
    expect(call.headers['gitlab-kas-api-request']).toBeTruthy();
  });

  test('files are read at the resolved commit, even when the branch moves during the read', async () => {
    gl.allowAgentProject(AGENT.id, MANIFESTS);
    const c1 = gl.setFile(MANIFESTS, 'main', 'app/deploy.yaml', 'version: 1\n');
    gl.setFile(MANIFESTS, 'main', '.hidden/skip.yaml', 'no\n');
    const commit1 = gl.setFile(MANIFESTS, 'main', 'README.md', 'not a manifest\n');
    expect(commit1).not.toBe(c1);
    const s = source();
    gl.delayNext(/\/raw$/, 300, 10);
    const reading = s.read(reader, spec(), undefined);
    await gl.waitForCall((c) => c.path.endsWith('/raw'));
    const commit2 = gl.setFile(MANIFESTS, 'main', 'app/deploy.yaml', 'version: 2\n');
    const result = await reading;
    expect(result.pushId).toBe(MANIFESTS);
    expect(result.snapshot?.commit).toBe(commit1);
    expect(result.snapshot?.files.map((f) => [f.path, Buffer.from(f.data).toString()])).toEqual([
      ['app/deploy.yaml', 'version: 1\n'],
      ['cm.yaml', 'kind: ConfigMap\n'],
    ]);
    const refs = gl.calls.filter((c) => c.path.endsWith('/raw') || c.path.endsWith('/tree')).map((c) => c.query.ref);
    expect(new Set(refs)).toEqual(new Set([commit1]));
    expect(gl.callsTo(/\/repository\//).every((c) => c.headers['private-token'] === gl.repositoryToken)).toBe(true);

    // The next poll: the same commit costs project_info (cached) and one commit look-up; a new one is read.
    gl.calls.length = 0;
    const next = await s.read(reader, spec(), commit1);
    expect(next.snapshot?.commit).toBe(commit2);
    expect(Buffer.from(next.snapshot!.files[0]!.data).toString()).toBe('version: 2\n');
    gl.calls.length = 0;
    expect((await s.read(reader, spec(), commit2)).snapshot).toBeNull();
    expect(gl.calls.map((c) => c.path.replace(/^\/api\/v4/, ''))).toEqual([`/projects/${MANIFESTS}/repository/commits/main`]);
  });

  test('tags, commits and branches; a missing ref is a problem of the project', async () => {
    gl.allowAgentProject(AGENT.id, MANIFESTS);
    const tagged = gl.setFile(MANIFESTS, 'main', 'tagged.yaml', 'x: 1\n');
    gl.setTag(MANIFESTS, 'v1.0', tagged);
    gl.setFile(MANIFESTS, 'main', 'tagged.yaml', 'x: 2\n');
    const s = source();
    expect((await s.read(reader, spec({ tag: 'v1.0' }), undefined)).snapshot?.commit).toBe(tagged);
    expect((await s.read(reader, spec({ commit: tagged.slice(0, 12) }), undefined)).snapshot?.commit).toBe(tagged);
    for (const ref of [{ branch: 'gone' }, { tag: 'v9' }, { commit: 'abcdef1234' }]) {
      const err = await s.read(reader, spec(ref), undefined).catch((e: unknown) => e);
      expect((err as ManifestProblemError).code).toBe('MANIFEST_REF_NOT_FOUND');
    }
  });

  test('the tree is read page by page; limits are enforced', async () => {
    gl.addProject({ id: 21, fullPath: 'acme/many' });
    gl.allowAgentProject(AGENT.id, 21);
    let head = '';
    for (let i = 0; i < 130; i++) head = gl.setFile(21, 'main', `cms/cm-${String(i).padStart(3, '0')}.yaml`, `n: ${i}\n`);
    const s = source();
    const all = await s.read(reader, { id: 'acme/many', ref: undefined, globs: ['cms/*.yaml'] }, undefined);
    expect(all.snapshot?.commit).toBe(head);
    expect(all.snapshot?.files).toHaveLength(130);
    expect(all.snapshot?.complete).toBe(true);
    expect(gl.callsTo(/\/repository\/tree$/).map((c) => c.query.page)).toEqual(['1', '2']);

    gl.setFile(21, 'main', 'cms/big.yaml', 'x'.repeat(64));
    const limited = await source({ limits: { files: 100, fileBytes: 32, projectBytes: 8 * 40 } }).read(reader, { id: 'acme/many', ref: undefined, globs: ['cms/*.yaml', 'cms/big.*'] }, undefined);
    const codes = limited.snapshot!.errors.map((e) => e.code);
    expect(codes).toEqual(['MANIFEST_DUPLICATE_FILE', 'MANIFEST_TOO_MANY_FILES', 'MANIFEST_FILE_TOO_LARGE', 'MANIFEST_PROJECT_TOO_LARGE']);
    expect(limited.snapshot!.complete).toBe(false);
    expect(limited.snapshot!.bytes).toBeLessThanOrEqual(8 * 40);
    expect(limited.snapshot!.files.some((f) => f.path === 'cms/big.yaml')).toBe(false);
  });
});
