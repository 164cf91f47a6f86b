/** The GitLab source with the real GitLab client against the fake GitLab of test/support. */
import { startFakeGitLab, type FakeGitLab } from '../../../test/support/fake-gitlab.js';
import type { AgentIdentity } from '../auth/types.js';
import { GitLabClient, GitLabError } from '../gitlab/client.js';
import { AgentConfigFileError } from './agent-config-file-error.js';
import { GitLabConfigSource } from './gitlab-source.js';
import { MAX_CONFIG_FILE_BYTES } from './schema.js';

const PROJECT = 7;
const FILE = '.gitlab/agents/edge/config.yaml';
const agent: AgentIdentity = { agentId: 3, agentName: 'edge', projectId: PROJECT, defaultBranch: 'main' };

describe('GitLabConfigSource', () => {
  let gl: FakeGitLab;
  let client: GitLabClient;
  let source: GitLabConfigSource;

  beforeAll(async () => {
    gl = await startFakeGitLab();
    gl.addProject({ id: PROJECT, fullPath: 'acme/edge' });
    client = new GitLabClient({ address: gl.url, secret: gl.secret, repositoryToken: gl.repositoryToken, attempts: 1 });
    source = new GitLabConfigSource(client);
  });

  afterAll(async () => {
    client?.close();
    await gl?.close();
  });

  beforeEach(() => {
    gl.calls.length = 0;
  });

  const fileCalls = () => gl.calls.filter((c) => c.path.includes('/repository/files/')).map((c) => `${c.method} ${c.path.endsWith('/raw') ? 'raw' : 'file'} ref=${String(c.query.ref)}`);

  test('a missing file is no file, and stays unchanged once known', async () => {
    expect(await source.read(agent, undefined)).toEqual({ commit: null, content: null });
    expect(await source.read(agent, null)).toBeNull();
  });

  test('a new commit is read at exactly that commit; the same commit again costs one HEAD', async () => {
    const commit = gl.setFile(PROJECT, 'main', FILE, 'observability: {}\n');
    gl.setFile(PROJECT, 'main', 'README.md', 'a later commit that does not touch the file\n');
    const file = await source.read(agent, null);
    expect(file?.commit).toBe(commit);
    expect(Buffer.from(file!.content!).toString()).toBe('observability: {}\n');
    expect(fileCalls()).toEqual(['HEAD file ref=main', `GET raw ref=${commit}`]);
    expect(gl.calls.every((c) => c.headers['private-token'] === gl.repositoryToken)).toBe(true);

    gl.calls.length = 0;
    expect(await source.read(agent, commit)).toBeNull();
    expect(fileCalls()).toEqual(['HEAD file ref=main']);
  });

  test('the default branch comes from the agent; without one GitLab resolves HEAD', async () => {
    gl.setFile(PROJECT, 'stable', FILE, 'flux: {}\n');
    const file = await source.read({ ...agent, defaultBranch: 'stable' }, undefined);
    expect(Buffer.from(file!.content!).toString()).toBe('flux: {}\n');
    gl.calls.length = 0;
    await source.read({ ...agent, defaultBranch: undefined }, undefined).catch(() => null);
    expect(fileCalls()[0]).toBe('HEAD file ref=HEAD');
  });

  test(`a file over ${MAX_CONFIG_FILE_BYTES} bytes is a configuration error found by its size, without downloading it`, async () => {
    const commit = gl.setFile(PROJECT, 'main', FILE, `# ${'x'.repeat(MAX_CONFIG_FILE_BYTES)}\n`);
    const file = await source.read(agent, null);
    expect(file?.commit).toBe(commit);
    expect(file?.content).toBeNull();
    expect(file?.problem).toBeInstanceOf(AgentConfigFileError);
    expect(file?.problem?.message).toBe(`the file is ${MAX_CONFIG_FILE_BYTES + 3} bytes; the limit is ${MAX_CONFIG_FILE_BYTES} bytes (128 KiB)`);
    expect(fileCalls()).toEqual(['HEAD file ref=main']);
  });

  test('a deleted file becomes no file again', async () => {
    gl.setFile(PROJECT, 'main', FILE, 'observability: {}\n');
    gl.deleteFile(PROJECT, 'main', FILE);
    expect(await source.read(agent, 'some-older-commit')).toEqual({ commit: null, content: null });
  });

  test('GitLab failing is an error of the read, not of the file', async () => {
    gl.failNext(/\/repository\/files\//, 503);
    await expect(source.read(agent, undefined)).rejects.toMatchObject({ code: 'GITLAB_ERROR', status: 503 });
  });

  test('without a repository token nothing is asked', async () => {
    const bare = new GitLabClient({ address: gl.url, secret: gl.secret });
    try {
      await expect(new GitLabConfigSource(bare).read(agent, undefined)).rejects.toThrow('gitlab.repository_token_file');
      expect(gl.calls).toEqual([]);
    } finally {
      bare.close();
    }
  });

  test('a download cut at the limit (no size in the HEAD answer) is the same configuration error', async () => {
    const stub = {
      fileHead: async () => ({ commitId: 'c0ffee', blobId: 'b1', size: 0 }),
      fileRaw: async (): Promise<Buffer> => {
        throw new GitLabError(413, 'too large');
      },
    };
    const file = await new GitLabConfigSource(stub).read(agent, undefined);
    expect(file).toMatchObject({ commit: 'c0ffee', content: null });
    expect(file?.problem?.message).toBe(`the file is more than ${MAX_CONFIG_FILE_BYTES} bytes; the limit is ${MAX_CONFIG_FILE_BYTES} bytes (128 KiB)`);
  });
});
