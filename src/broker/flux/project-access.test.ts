/** GitLab's answer to "may this agent follow that project", with the real client against the fake GitLab. */
import { startFakeGitLab, type FakeGitLab } from '../../../test/support/fake-gitlab.js';
import { GitLabClient } from '../gitlab/client.js';
import { GitLabProjectAccess } from './project-access.js';

const TOKEN = 'glagent-flux-access-test-0123456789';

describe('GitLabProjectAccess', () => {
  let gl: FakeGitLab;
  let client: GitLabClient;

  beforeAll(async () => {
    gl = await startFakeGitLab();
    gl.addProject({ id: 5, fullPath: 'acme/clusters' });
    gl.addProject({ id: 7, fullPath: 'acme/app' });
    gl.addProject({ id: 9, fullPath: 'acme/private' });
    gl.addAgent({ id: 1, name: 'prod', projectId: 5, token: TOKEN });
    gl.allowAgentProject(1, 7);
    client = new GitLabClient({ address: gl.url, secret: gl.secret, attempts: 1 });
  });

  afterAll(async () => {
    client?.close();
    await gl?.close();
  });

  test('an allowed project gives its id (cached); a forbidden one is a definite refusal (cached); a failure is not cached', async () => {
    const access = new GitLabProjectAccess(client, { okTtlMs: 60_000, refusalTtlMs: 60_000 });
    const projectInfo = () => gl.callsTo('/internal/kubernetes/project_info').length;
    const before = projectInfo();
    expect(await access.check(TOKEN, 'acme/app')).toEqual({ ok: true, projectId: 7 });
    expect(await access.check(TOKEN, 'ACME/App')).toEqual({ ok: true, projectId: 7 });
    expect(projectInfo()).toBe(before + 1);

    expect(await access.check(TOKEN, 'acme/private')).toEqual({ ok: false, definite: true, reason: expect.stringContaining('404') });
    expect(await access.check(TOKEN, 'acme/private')).toMatchObject({ ok: false, definite: true });
    expect(projectInfo()).toBe(before + 2);

    // Another token is another question.
    expect(await access.check('glagent-unknown', 'acme/app')).toMatchObject({ ok: false, definite: true });

    gl.failNext('/internal/kubernetes/project_info', 503);
    expect(await access.check(TOKEN, 'acme/clusters')).toMatchObject({ ok: false, definite: false });
    expect(await access.check(TOKEN, 'acme/clusters')).toEqual({ ok: true, projectId: 5 });
  });
});
