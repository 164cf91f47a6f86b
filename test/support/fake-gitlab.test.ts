/**
 * The fake GitLab against the kas ⇄ GitLab contract: every endpoint's answer and refusals, the JWT checks
 * GitLab makes on kas's calls (and the attacks it refuses), the repository model, failure injection, and
 * the helpers that sign GitLab → kas JWTs.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { SignJWT, UnsecuredJWT, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import {
  GITLAB_TO_KAS_ISSUER,
  KAS_JWT_INVALID_MESSAGE,
  gitlabToKasAttackJwts,
  gitlabToKasJwt,
  startFakeGitLab,
  unsignedJwt,
  type FakeGitLab,
} from './fake-gitlab.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The body parsed as JSON (undefined when empty). */
  json: unknown;
}

interface RequestOptions {
  headers?: Record<string, string>;
  /** An object is sent as JSON with Content-Type application/json; a string as is. */
  body?: unknown;
  /** The kas JWT: a fresh valid one by default on /internal paths; false for none. */
  jwt?: string | false;
  fake?: FakeGitLab;
}

let gl: FakeGitLab;

const CONFIG_PROJECT = 100;
const MANIFEST_PROJECT = 200;
const PUBLIC_PROJECT = 300;
const PRIVATE_PROJECT = 400;

beforeAll(async () => {
  gl = await startFakeGitLab();
  gl.addProject({ id: CONFIG_PROJECT, fullPath: 'acme/platform/cluster-config', defaultBranch: 'trunk' });
  gl.addProject({ id: MANIFEST_PROJECT, fullPath: 'acme/manifests' });
  gl.addProject({ id: PUBLIC_PROJECT, fullPath: 'acme/public-manifests', public: true });
  gl.addProject({ id: PRIVATE_PROJECT, fullPath: 'other/secret' });
  gl.addAgent({ id: 1, name: 'prod', projectId: CONFIG_PROJECT, token: 'glagent-prod-token' });
  gl.allowAgentProject(1, MANIFEST_PROJECT);
  gl.addUser({ id: 10, username: 'jane', pat: ['glpat-jane'], sessionCookie: { value: 'cookie-jane', csrfToken: 'csrf-jane' } });
  gl.addUser({ id: 11, username: 'bob', pat: ['glpat-bob'] });
  gl.addUser({ id: 12, username: 'eve', pat: ['glpat-eve'] });
  gl.setUserAccess(1, 10, { access_as: { agent: {} } });
  gl.setUserAccess(1, 11, { access_as: { user: { projects: [{ id: 7, roles: ['developer'] }], groups: [{ id: 3, roles: ['reporter', 'developer'] }] } }, configProjectId: 7 });
});

afterAll(async () => {
  await gl?.close();
});

/** A kas → GitLab JWT made with jose, as kas must make it (valid unless changed). */
async function kasJwt(o: { claims?: Record<string, unknown>; alg?: string; key?: Uint8Array } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: 'gitlab-kas', aud: 'gitlab', iat: now, nbf: now - 5, exp: now + 30, ...o.claims } as JWTPayload;
  return new SignJWT(claims).setProtectedHeader({ alg: o.alg ?? 'HS256' }).sign(o.key ?? gl.secret);
}

async function request(method: string, path: string, o: RequestOptions = {}): Promise<Answer> {
  const fake = o.fake ?? gl;
  const headers: Record<string, string> = { ...o.headers };
  if (path.startsWith('/api/v4/internal/') && o.jwt !== false) headers['Gitlab-Kas-Api-Request'] = o.jwt ?? (await kasJwt());
  let body: Buffer | undefined;
  if (typeof o.body === 'string') body = Buffer.from(o.body);
  else if (o.body !== undefined) {
    body = Buffer.from(JSON.stringify(o.body));
    headers['Content-Type'] ??= 'application/json';
  }
  const url = new URL(path, fake.url);
  const transport = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(url, { method, headers, ca: fake.caPem ?? undefined }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const isJson = (res.headers['content-type'] ?? '').startsWith('application/json') && raw.length > 0;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: raw, json: isJson ? (JSON.parse(raw.toString()) as unknown) : undefined });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const agentInfo = (token: string, o: RequestOptions = {}) =>
  request('GET', '/api/v4/internal/kubernetes/agent_info', { ...o, headers: { Authorization: `Bearer ${token}`, ...o.headers } });
const authorize = (body: unknown, o: RequestOptions = {}) => request('POST', '/api/v4/internal/kubernetes/authorize_proxy_user', { ...o, body });
const repo = (path: string, method = 'GET', token: string | null = gl.repositoryToken) =>
  request(method, `/api/v4/projects/${path}`, { headers: token === null ? {} : { 'PRIVATE-TOKEN': token } });
const gitBlobId = (content: string) => createHash('sha1').update(`blob ${Buffer.byteLength(content)}\0${content}`).digest('hex');
const lastCall = () => gl.calls[gl.calls.length - 1]!;

function expectError(a: Answer, status: number, message: string): void {
  expect({ status: a.status, json: a.json }).toEqual({ status, json: { message } });
}

describe('the shared secret', () => {
  test('is 32 random bytes; the secret file is their standard Base64 and a newline', () => {
    expect(gl.secret).toHaveLength(32);
    expect(gl.secretFileContent).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    expect(Buffer.from(gl.secretFileContent.trim(), 'base64').equals(gl.secret)).toBe(true);
  });
});

describe('the kas JWT on /internal/kubernetes/*', () => {
  test('a fresh HS256 token with iss gitlab-kas and aud gitlab is accepted and recorded', async () => {
    const a = await agentInfo('glagent-prod-token');
    expect(a.status).toBe(200);
    expect(lastCall()).toMatchObject({ jwtOk: true, jwtError: null, status: 200 });
    expect(lastCall().jwtClaims).toMatchObject({ iss: 'gitlab-kas', aud: 'gitlab' });
  });

  test('an aud array that holds "gitlab" is accepted, as by GitLab', async () => {
    expect((await agentInfo('glagent-prod-token', { jwt: await kasJwt({ claims: { aud: ['gitlab', 'other'] } }) })).status).toBe(200);
  });

  test('up to 5 s of clock skew is tolerated', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect((await agentInfo('glagent-prod-token', { jwt: await kasJwt({ claims: { exp: now - 3 } }) })).status).toBe(200);
    expect((await agentInfo('glagent-prod-token', { jwt: await kasJwt({ claims: { nbf: now + 3, iat: now + 3 } }) })).status).toBe(200);
  });

  const otherSecret = new Uint8Array(32).fill(7);
  const now = () => Math.floor(Date.now() / 1000);
  const attacks: Array<[string, RegExp, () => Promise<string | false>]> = [
    ['no header at all', /no Gitlab-Kas-Api-Request header/, async () => false],
    ['an empty header', /no Gitlab-Kas-Api-Request header/, async () => ''],
    ['"Bearer <jwt>" instead of the bare JWT', /format/i, async () => `Bearer ${await kasJwt()}`],
    ['alg none (unsigned)', /alg "none"/, async () => new UnsecuredJWT({ iss: 'gitlab-kas', aud: 'gitlab', iat: now(), nbf: now() - 5, exp: now() + 30 }).encode()],
    ['HS384 with the right secret (GitLab accepts HS256 only)', /alg "HS384"/, () => kasJwt({ alg: 'HS384' })],
    ['HS512 with the right secret', /alg "HS512"/, () => kasJwt({ alg: 'HS512' })],
    ['HS256 signed with another secret', /signature/, () => kasJwt({ key: otherSecret })],
    ['a wrong issuer', /"iss"/, () => kasJwt({ claims: { iss: 'gitlab' } })],
    ['no issuer', /"iss"/, () => kasJwt({ claims: { iss: undefined } })],
    ['a wrong audience (a GitLab → kas token)', /"aud"/, () => kasJwt({ claims: { aud: 'gitlab-kas' } })],
    ['no audience', /"aud"/, () => kasJwt({ claims: { aud: undefined } })],
    ['expired 10 s ago', /"exp"/, () => kasJwt({ claims: { iat: now() - 40, nbf: now() - 45, exp: now() - 10 } })],
    ['not valid for another 60 s (nbf)', /"nbf"/, () => kasJwt({ claims: { nbf: now() + 60 } })],
    ['issued 60 s in the future (iat)', /"iat"/, () => kasJwt({ claims: { iat: now() + 60 } })],
    ['no exp', /"exp"/, () => kasJwt({ claims: { exp: undefined } })],
    ['no iat', /"iat"/, () => kasJwt({ claims: { iat: undefined } })],
    ['no nbf', /"nbf"/, () => kasJwt({ claims: { nbf: undefined } })],
    [
      'a tampered payload (signature of the original kept)',
      /signature/,
      async () => {
        const [h, p, s] = (await kasJwt()).split('.') as [string, string, string];
        const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as JWTPayload;
        return `${h}.${Buffer.from(JSON.stringify({ ...claims, exp: now() + 3600 })).toString('base64url')}.${s}`;
      },
    ],
    ['a stripped signature', /signature/, async () => (await kasJwt()).replace(/\.[^.]+$/, '.')],
    ['garbage', /format/i, async () => 'not-a-jwt'],
  ];

  test.each(attacks)('%s is refused with 401 and GitLab\'s message', async (_name, reason, make) => {
    const jwt = await make();
    const a = await agentInfo('glagent-prod-token', { jwt });
    expectError(a, 401, KAS_JWT_INVALID_MESSAGE);
    expect(lastCall().jwtOk).toBe(false);
    expect(lastCall().jwtError).toMatch(reason);
  });

  test.each([
    ['POST', '/api/v4/internal/kubernetes/authorize_proxy_user'],
    ['POST', '/api/v4/internal/kubernetes/agent_configuration'],
    ['POST', '/api/v4/internal/kubernetes/usage_metrics'],
    ['POST', '/api/v4/internal/kubernetes/agent_events'],
    ['GET', '/api/v4/internal/kubernetes/project_info?id=100'],
    ['GET', '/api/v4/internal/kubernetes/verify_project_access?id=100'],
  ])('%s %s requires it too', async (method, path) => {
    const a = await request(method, path, { jwt: false, body: method === 'POST' ? {} : undefined, headers: { Authorization: 'Bearer glagent-prod-token' } });
    expectError(a, 401, KAS_JWT_INVALID_MESSAGE);
  });

  test('the JWT is checked before the agent token', async () => {
    expectError(await agentInfo('unknown-token', { jwt: false }), 401, KAS_JWT_INVALID_MESSAGE);
  });
});

describe('GET /internal/kubernetes/agent_info', () => {
  test('answers the agent, its project, Gitaly facts and the default branch', async () => {
    const a = await agentInfo('glagent-prod-token');
    expect(a.status).toBe(200);
    expect(a.json).toEqual({
      project_id: CONFIG_PROJECT,
      agent_id: 1,
      agent_name: 'prod',
      gitaly_info: { address: expect.any(String), token: expect.any(String), features: {} },
      gitaly_repository: expect.objectContaining({ storage_name: 'default', relative_path: expect.stringMatching(/^@hashed\/.+\.git$/), gl_repository: 'project-100', gl_project_path: 'acme/platform/cluster-config' }),
      default_branch: 'trunk',
    });
    expect(lastCall().headers.authorization).toBe('Bearer glagent-prod-token');
  });

  test('an unknown or missing agent token is 401', async () => {
    expectError(await agentInfo('glagent-nope'), 401, '401 Unauthorized');
    expectError(await request('GET', '/api/v4/internal/kubernetes/agent_info'), 401, '401 Unauthorized');
  });

  test('a revoked token is 401; the agent\'s other tokens keep working', async () => {
    gl.addAgent({ id: 2, name: 'rotating', projectId: CONFIG_PROJECT, token: 'glagent-old' });
    gl.addAgentToken(2, 'glagent-new');
    expect((await agentInfo('glagent-old')).status).toBe(200);
    gl.revokeAgentToken('glagent-old');
    expectError(await agentInfo('glagent-old'), 401, '401 Unauthorized');
    expect((await agentInfo('glagent-new')).status).toBe(200);
  });

  test('a deleted agent is 404', async () => {
    gl.addAgent({ id: 3, name: 'doomed', projectId: CONFIG_PROJECT, token: 'glagent-doomed' });
    gl.deleteAgent(3);
    expectError(await agentInfo('glagent-doomed'), 404, '404 Not found');
  });

  test('a forbidden agent is 403', async () => {
    gl.addAgent({ id: 4, name: 'blocked', projectId: CONFIG_PROJECT, token: 'glagent-blocked' });
    gl.forbidAgent(4);
    expectError(await agentInfo('glagent-blocked'), 403, '403 Forbidden');
    gl.forbidAgent(4, false);
    expect((await agentInfo('glagent-blocked')).status).toBe(200);
  });

  test('an agent added with a project that was not added gets one', async () => {
    gl.addAgent({ id: 5, name: 'lonely', projectId: 555, token: 'glagent-lonely', defaultBranch: 'master' });
    expect(await agentInfo('glagent-lonely')).toMatchObject({ status: 200, json: { project_id: 555, default_branch: 'master', gitaly_repository: { gl_project_path: 'root/project-555' } } });
  });

  test('an invalid agent name is a set-up error', () => {
    expect(() => gl.addAgent({ id: 6, name: 'Not_A_Label', projectId: CONFIG_PROJECT, token: 't' })).toThrow(/DNS label/);
  });
});

describe('GET /internal/kubernetes/project_info and verify_project_access', () => {
  const info = (id: string, token = 'glagent-prod-token') => request('GET', `/api/v4/internal/kubernetes/project_info?id=${encodeURIComponent(id)}`, { headers: { Authorization: `Bearer ${token}` } });
  const verify = (id: string, token = 'glagent-prod-token') => request('GET', `/api/v4/internal/kubernetes/verify_project_access?id=${encodeURIComponent(id)}`, { headers: { Authorization: `Bearer ${token}` } });

  test('the agent\'s own project, an allowed one (by id or full path) and a public one are readable', async () => {
    expect(await info('100')).toMatchObject({ status: 200, json: { project_id: 100, default_branch: 'trunk', gitaly_repository: { gl_project_path: 'acme/platform/cluster-config' } } });
    expect(await info('acme/manifests')).toMatchObject({ status: 200, json: { project_id: MANIFEST_PROJECT, default_branch: 'main' } });
    expect(await info('ACME/Manifests')).toMatchObject({ status: 200, json: { project_id: MANIFEST_PROJECT } });
    expect(await info(String(PUBLIC_PROJECT))).toMatchObject({ status: 200, json: { project_id: PUBLIC_PROJECT } });
    const v = await verify('acme/manifests');
    expect({ status: v.status, body: v.body.length }).toEqual({ status: 204, body: 0 });
  });

  test('a project the agent may not read is 404, as is an unknown one', async () => {
    expectError(await info(String(PRIVATE_PROJECT)), 404, '404 Not Found');
    expectError(await verify(String(PRIVATE_PROJECT)), 404, '404 Not Found');
    expectError(await info('no/such-project'), 404, '404 Project Not Found');
    expectError(await verify('999999'), 404, '404 Project Not Found');
  });

  test('the agent token is required; a missing id is 400', async () => {
    expectError(await info('100', 'glagent-nope'), 401, '401 Unauthorized');
    expectError(await request('GET', '/api/v4/internal/kubernetes/project_info', { headers: { Authorization: 'Bearer glagent-prod-token' } }), 400, '400 Bad request - id is missing');
  });
});

describe('POST /internal/kubernetes/authorize_proxy_user', () => {
  test('a personal access token of a user with access as the agent', async () => {
    const a = await authorize({ agent_id: 1, access_type: 'personal_access_token', access_key: 'glpat-jane' });
    expect(a).toMatchObject({ status: 200, json: { agent: { id: 1, config_project: { id: CONFIG_PROJECT } }, user: { id: 10, username: 'jane' }, access_as: { agent: {} } } });
    expect(lastCall().body).toEqual({ agent_id: 1, access_type: 'personal_access_token', access_key: 'glpat-jane' });
  });

  test('agent_id as a numeric string (how GitLab\'s kas sends 64-bit ids); access as the user', async () => {
    const a = await authorize({ agent_id: '1', access_type: 'personal_access_token', access_key: 'glpat-bob' });
    expect(a.json).toEqual({
      agent: { id: 1, config_project: { id: 7 } },
      user: { id: 11, username: 'bob' },
      access_as: { user: { projects: [{ id: 7, roles: ['developer'] }], groups: [{ id: 3, roles: ['reporter', 'developer'] }] } },
    });
  });

  test('a session cookie with its CSRF token; a wrong CSRF token is 401', async () => {
    expect((await authorize({ agent_id: 1, access_type: 'session_cookie', access_key: 'cookie-jane', csrf_token: 'csrf-jane' })).json).toMatchObject({ user: { id: 10 } });
    expectError(await authorize({ agent_id: 1, access_type: 'session_cookie', access_key: 'cookie-jane', csrf_token: 'csrf-other' }), 401, '401 Unauthorized - CSRF token does not match');
  });

  test('an unknown, revoked or ended credential is 401', async () => {
    expectError(await authorize({ agent_id: 1, access_type: 'personal_access_token', access_key: 'glpat-unknown' }), 401, '401 Unauthorized');
    expectError(await authorize({ agent_id: 1, access_type: 'session_cookie', access_key: 'cookie-unknown', csrf_token: 'x' }), 401, '401 Unauthorized - Invalid session');
    gl.addUser({ id: 13, username: 'mallory', pat: ['glpat-mallory'], sessionCookie: { value: 'cookie-mallory', csrfToken: 'csrf-m' } });
    gl.setUserAccess(1, 13, { access_as: { agent: {} } });
    expect((await authorize({ agent_id: 1, access_type: 'personal_access_token', access_key: 'glpat-mallory' })).status).toBe(200);
    gl.revokePersonalAccessToken('glpat-mallory');
    gl.endSession('cookie-mallory');
    expectError(await authorize({ agent_id: 1, access_type: 'personal_access_token', access_key: 'glpat-mallory' }), 401, '401 Unauthorized');
    expectError(await authorize({ agent_id: 1, access_type: 'session_cookie', access_key: 'cookie-mallory', csrf_token: 'csrf-m' }), 401, '401 Unauthorized - Invalid session');
  });

  test('a user with no access configured for the agent is 403; access removed again is 403', async () => {
    expectError(await authorize({ agent_id: 1, access_type: 'personal_access_token', access_key: 'glpat-eve' }), 403, '403 Forbidden');
    gl.setUserAccess(1, 12, { access_as: { agent: {} } });
    expect((await authorize({ agent_id: 1, access_type: 'personal_access_token', access_key: 'glpat-eve' })).status).toBe(200);
    gl.setUserAccess(1, 12, null);
    expectError(await authorize({ agent_id: 1, access_type: 'personal_access_token', access_key: 'glpat-eve' }), 403, '403 Forbidden');
  });

  test('an unknown or deleted agent is 404 (the user is checked first)', async () => {
    expectError(await authorize({ agent_id: 4242, access_type: 'personal_access_token', access_key: 'glpat-jane' }), 404, '404 Not found');
    expectError(await authorize({ agent_id: 3, access_type: 'personal_access_token', access_key: 'glpat-jane' }), 404, '404 Not found');
    expectError(await authorize({ agent_id: 4242, access_type: 'personal_access_token', access_key: 'glpat-unknown' }), 401, '401 Unauthorized');
  });

  test.each([
    ['no agent_id', { access_type: 'personal_access_token', access_key: 'glpat-jane' }, 'agent_id is missing'],
    ['a non-numeric agent_id', { agent_id: 'one', access_type: 'personal_access_token', access_key: 'glpat-jane' }, 'agent_id is invalid'],
    ['a fractional agent_id', { agent_id: 1.5, access_type: 'personal_access_token', access_key: 'glpat-jane' }, 'agent_id is invalid'],
    ['no access_type', { agent_id: 1, access_key: 'glpat-jane' }, 'access_type is missing'],
    ['an unknown access_type', { agent_id: 1, access_type: 'password', access_key: 'x' }, 'access_type does not have a valid value'],
    ['no access_key', { agent_id: 1, access_type: 'personal_access_token' }, 'access_key is missing'],
    ['a session cookie without csrf_token', { agent_id: 1, access_type: 'session_cookie', access_key: 'cookie-jane' }, 'csrf_token is missing'],
    ['a session cookie with an empty csrf_token', { agent_id: 1, access_type: 'session_cookie', access_key: 'cookie-jane', csrf_token: '' }, 'csrf_token is empty'],
    ['a JSON array', [1, 2], 'the body is not a JSON object'],
  ])('%s is 400', async (_name, body, reason) => {
    expectError(await authorize(body), 400, `400 Bad request - ${reason}`);
  });

  test('a body that is not JSON, or JSON without a JSON content type, is 400', async () => {
    expect((await authorize('{"agent_id":', {})).status).toBe(400);
    expect((await authorize(JSON.stringify({ agent_id: 1, access_type: 'personal_access_token', access_key: 'glpat-jane' }), { headers: { 'Content-Type': 'text/plain' } })).status).toBe(400);
  });
});

describe('GET /job/allowed_agents', () => {
  beforeAll(() => {
    gl.addCiJob({
      token: 'job-token-1',
      jobId: 901,
      pipelineId: 801,
      projectId: 42,
      groups: [5, 6],
      user: { id: 10, username: 'jane', roles_in_project: ['guest', 'reporter', 'developer'] },
      environment: { slug: 'production', tier: 'production' },
      allowedAgents: [{ id: 1, configProjectId: CONFIG_PROJECT, configuration: { default_namespace: 'apps', access_as: { ci_job: {} } } }],
    });
    gl.addCiJob({ token: 'job-token-2', jobId: 902, pipelineId: 802, projectId: 43, groups: [], user: { id: 11, username: 'bob', roles_in_project: [] }, allowedAgents: [] });
  });

  test('answers the allowed agents, job, pipeline, project, user and environment, without a JWT', async () => {
    const a = await request('GET', '/api/v4/job/allowed_agents', { headers: { 'Job-Token': 'job-token-1' } });
    expect(a.status).toBe(200);
    expect(a.json).toEqual({
      allowed_agents: [{ id: 1, config_project: { id: CONFIG_PROJECT }, configuration: { default_namespace: 'apps', access_as: { ci_job: {} } } }],
      job: { id: 901 },
      pipeline: { id: 801 },
      project: { id: 42, groups: [{ id: 5 }, { id: 6 }] },
      user: { id: 10, username: 'jane', roles_in_project: ['guest', 'reporter', 'developer'] },
      environment: { slug: 'production', tier: 'production' },
    });
    expect(lastCall().jwtOk).toBeNull();
  });

  test('a job without an environment has no environment key', async () => {
    const a = await request('GET', '/api/v4/job/allowed_agents', { headers: { 'Job-Token': 'job-token-2' } });
    expect(a.json).not.toHaveProperty('environment');
    expect(a.json).toMatchObject({ allowed_agents: [], project: { id: 43, groups: [] } });
  });

  test('an unknown, missing or revoked job token is 401', async () => {
    expectError(await request('GET', '/api/v4/job/allowed_agents', { headers: { 'Job-Token': 'nope' } }), 401, '401 Unauthorized');
    expectError(await request('GET', '/api/v4/job/allowed_agents'), 401, '401 Unauthorized');
    gl.addCiJob({ token: 'job-token-3', jobId: 903, pipelineId: 803, projectId: 44, groups: [], user: { id: 11, username: 'bob', roles_in_project: [] }, allowedAgents: [] });
    gl.revokeCiJobToken('job-token-3');
    expectError(await request('GET', '/api/v4/job/allowed_agents', { headers: { 'Job-Token': 'job-token-3' } }), 401, '401 Unauthorized');
  });
});

describe('POST /internal/kubernetes/agent_configuration', () => {
  const post = (body: unknown) => request('POST', '/api/v4/internal/kubernetes/agent_configuration', { body });

  test('is answered 204 and recorded as sent', async () => {
    const before = gl.agentConfigurations.length;
    const a = await post({ agent_id: '1', agent_config: { gitops: { manifest_projects: [{ id: 'acme/manifests' }] } } });
    expect({ status: a.status, body: a.body.length }).toEqual({ status: 204, body: 0 });
    expect(gl.agentConfigurations.slice(before)).toEqual([{ agent_id: '1', agent_config: { gitops: { manifest_projects: [{ id: 'acme/manifests' }] } } }]);
  });

  test('an unknown agent is 404; a malformed body is 400 and not recorded', async () => {
    const before = gl.agentConfigurations.length;
    expectError(await post({ agent_id: 4242, agent_config: {} }), 404, '404 Not found');
    expectError(await post({ agent_config: {} }), 400, '400 Bad request - agent_id is missing');
    expectError(await post({ agent_id: 1 }), 400, '400 Bad request - agent_config is missing');
    expectError(await post({ agent_id: 1, agent_config: 5 }), 400, '400 Bad request - agent_config is invalid');
    expect(gl.agentConfigurations).toHaveLength(before);
  });
});

describe('POST /internal/kubernetes/agent_events', () => {
  const post = (body: unknown) => request('POST', '/api/v4/internal/kubernetes/agent_events', { body });
  const registration = { project_id: 100, agent_id: 1, agent_version: '1.2.3', architecture: 'amd64', kubernetes_version: 'v1.20.2', extra_telemetry: { installation_method: 'helm' } };

  test('is answered 204 and recorded, with ids as integers or digit strings', async () => {
    const before = gl.agentEvents.length;
    const body = {
      events: {
        register_agent_at_kas: [registration, { ...registration, agent_id: '2', project_id: '100', extra_telemetry: undefined }],
        k8s_api_proxy_requests_unique_users_via_ci_access: [{ user_id: 10, project_id: 43 }],
        k8s_api_proxy_requests_unique_users_via_user_access: [{ user_id: '11', project_id: 100 }],
        k8s_api_proxy_requests_unique_users_via_pat_access: [],
      },
    };
    expect((await post(body)).status).toBe(204);
    expect(gl.agentEvents.slice(before)).toEqual([JSON.parse(JSON.stringify(body))]);
  });

  test.each([
    ['no events', {}, 'events is missing or not an object'],
    ['an unknown parameter', { events: {}, counters: {} }, 'unknown parameter counters'],
    ['an unknown event', { events: { k8s_api_proxy_requests_unique_users_via_job_access: [] } }, 'events[k8s_api_proxy_requests_unique_users_via_job_access] is not an event GitLab knows'],
    ['entries not in a list', { events: { register_agent_at_kas: registration } }, 'events[register_agent_at_kas] is not an array'],
    ['a registration without its architecture', { events: { register_agent_at_kas: [{ ...registration, architecture: undefined }] } }, 'events[register_agent_at_kas][0].architecture is missing'],
    ['a registration with a field GitLab does not take', { events: { register_agent_at_kas: [{ ...registration, pod_uid: 'x' }] } }, 'events[register_agent_at_kas][0].pod_uid is not a parameter'],
    ['a registration with a number as version', { events: { register_agent_at_kas: [{ ...registration, kubernetes_version: 1.2 }] } }, 'events[register_agent_at_kas][0].kubernetes_version is invalid'],
    ['telemetry values that are not strings', { events: { register_agent_at_kas: [{ ...registration, extra_telemetry: { n: 1 } }] } }, 'events[register_agent_at_kas][0].extra_telemetry is invalid'],
    ['a user event without a project', { events: { k8s_api_proxy_requests_unique_users_via_pat_access: [{ user_id: 1 }] } }, 'events[k8s_api_proxy_requests_unique_users_via_pat_access][0].project_id is missing'],
    ['a user id that is not an integer', { events: { k8s_api_proxy_requests_unique_users_via_ci_access: [{ user_id: 'bob', project_id: 1 }] } }, 'events[k8s_api_proxy_requests_unique_users_via_ci_access][0].user_id is invalid'],
  ])('%s is 400', async (_name, body, reason) => {
    const before = gl.agentEvents.length;
    expectError(await post(body), 400, `400 Bad request - ${reason}`);
    expect(gl.agentEvents).toHaveLength(before);
  });
});

describe('POST /internal/kubernetes/usage_metrics', () => {
  const post = (body: unknown) => request('POST', '/api/v4/internal/kubernetes/usage_metrics', { body });

  test('is answered 204 and recorded', async () => {
    const before = gl.usageMetrics.length;
    const body = { counters: { k8s_api_proxy_request: 3, gitops_sync: 0 }, unique_counters: { k8s_api_proxy_requests_unique_users_via_ci_access: [10, 11] } };
    const a = await post(body);
    expect(a.status).toBe(204);
    expect(gl.usageMetrics.slice(before)).toEqual([body]);
  });

  test.each([
    ['counters not an object', { counters: [1] }, 'counters is invalid'],
    ['a counter that is not an integer', { counters: { k8s_api_proxy_request: 'many' } }, 'counters[k8s_api_proxy_request] is invalid'],
    ['a negative counter', { counters: { k8s_api_proxy_request: -1 } }, 'counters[k8s_api_proxy_request] must not be negative'],
    ['unique_counters not an object', { unique_counters: 'x' }, 'unique_counters is invalid'],
    ['a unique counter that is not a list of ids', { unique_counters: { k8s_api_proxy_requests_unique_users_via_ci_access: 10 } }, 'unique_counters[k8s_api_proxy_requests_unique_users_via_ci_access] is invalid'],
    ['a unique counter with a non-integer id', { unique_counters: { k8s_api_proxy_requests_unique_users_via_ci_access: [1, 'x'] } }, 'unique_counters[k8s_api_proxy_requests_unique_users_via_ci_access] is invalid'],
  ])('%s is 400', async (_name, body, reason) => {
    const before = gl.usageMetrics.length;
    expectError(await post(body), 400, `400 Bad request - ${reason}`);
    expect(gl.usageMetrics).toHaveLength(before);
  });
});

describe('repository files', () => {
  const P = MANIFEST_PROJECT;
  const cfgPath = '.gitlab/agents/prod/config.yaml';
  const encPath = encodeURIComponent(cfgPath);

  beforeAll(() => {
    gl.setFile(CONFIG_PROJECT, 'trunk', cfgPath, 'gitops: {}\n');
    gl.setFile(P, 'main', 'apps/a.yaml', 'kind: A\n');
    gl.setFile(P, 'main', 'apps/nested/b.yaml', 'kind: B\n');
    gl.setFile(P, 'main', 'README.md', '# manifests\n');
  });

  test('raw: the bytes, with the X-Gitlab-* headers; by numeric id or URL-encoded full path', async () => {
    const a = await repo(`${CONFIG_PROJECT}/repository/files/${encPath}/raw?ref=trunk`);
    expect(a.status).toBe(200);
    expect(a.body.toString()).toBe('gitops: {}\n');
    expect(a.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(a.headers['x-gitlab-blob-id']).toBe(gitBlobId('gitops: {}\n'));
    expect(a.headers['x-gitlab-commit-id']).toBe(gl.headCommit(CONFIG_PROJECT, 'trunk'));
    const b = await repo(`${encodeURIComponent('acme/platform/cluster-config')}/repository/files/${encPath}/raw?ref=trunk`);
    expect(b.body.toString()).toBe('gitops: {}\n');
  });

  test('raw without ref reads the default branch; binary content survives', async () => {
    gl.setFile(CONFIG_PROJECT, 'trunk', 'bin/blob', Buffer.from([0, 255, 1, 254]));
    const a = await repo(`${CONFIG_PROJECT}/repository/files/${encodeURIComponent('bin/blob')}/raw`);
    expect([...a.body]).toEqual([0, 255, 1, 254]);
  });

  test('HEAD: commit, blob and last-commit ids; each setFile is a new commit, other files keep their last commit', async () => {
    const head1 = await repo(`${P}/repository/files/${encodeURIComponent('apps/a.yaml')}?ref=main`, 'HEAD');
    expect(head1.status).toBe(200);
    expect(head1.body).toHaveLength(0);
    expect(head1.headers).toMatchObject({
      'x-gitlab-commit-id': gl.headCommit(P, 'main'),
      'x-gitlab-blob-id': gitBlobId('kind: A\n'),
      'x-gitlab-file-path': 'apps/a.yaml',
      'x-gitlab-file-name': 'a.yaml',
      'x-gitlab-size': '8',
      'x-gitlab-ref': 'main',
    });
    const aChangedIn = head1.headers['x-gitlab-last-commit-id'];
    const newCommit = gl.setFile(P, 'main', 'README.md', '# manifests, v2\n');
    const head2 = await repo(`${P}/repository/files/${encodeURIComponent('apps/a.yaml')}?ref=main`, 'HEAD');
    expect(head2.headers['x-gitlab-commit-id']).toBe(newCommit);
    expect(newCommit).not.toBe(head1.headers['x-gitlab-commit-id']);
    expect(head2.headers['x-gitlab-last-commit-id']).toBe(aChangedIn);
    expect(head2.headers['x-gitlab-blob-id']).toBe(head1.headers['x-gitlab-blob-id']);
    const sameContent = gl.setFile(P, 'main', 'README.md', '# manifests, v2\n');
    expect(sameContent).not.toBe(newCommit);
  });

  test('GET metadata: JSON with base64 content; ref is required there', async () => {
    const a = await repo(`${P}/repository/files/${encodeURIComponent('apps/a.yaml')}?ref=main`);
    expect(a.json).toMatchObject({ file_name: 'a.yaml', file_path: 'apps/a.yaml', size: 8, encoding: 'base64', content: Buffer.from('kind: A\n').toString('base64'), blob_id: gitBlobId('kind: A\n') });
    expectError(await repo(`${P}/repository/files/${encodeURIComponent('apps/a.yaml')}`), 400, '400 Bad request - ref is missing');
  });

  test('a missing file is 404 File Not Found; an unknown ref 404 Commit Not Found; HEAD says 404 without a body', async () => {
    expectError(await repo(`${P}/repository/files/${encodeURIComponent('nope.yaml')}/raw?ref=main`), 404, '404 File Not Found');
    expectError(await repo(`${P}/repository/files/${encodeURIComponent('apps/a.yaml')}/raw?ref=no-such-branch`), 404, '404 Commit Not Found');
    const h = await repo(`${P}/repository/files/${encodeURIComponent('nope.yaml')}?ref=main`, 'HEAD');
    expect({ status: h.status, body: h.body.length }).toEqual({ status: 404, body: 0 });
  });

  test('an unencoded slash in the file path does not route (404), as in GitLab', async () => {
    expectError(await repo(`${P}/repository/files/apps/a.yaml/raw?ref=main`), 404, '404 Not Found');
  });

  test('deleteFile makes the file 404 on that ref; the old commit still has it; other branches start from the default one', async () => {
    const before = gl.headCommit(P, 'main')!;
    gl.setFile(P, 'feature/x', 'apps/c.yaml', 'kind: C\n');
    expect((await repo(`${P}/repository/files/${encodeURIComponent('apps/a.yaml')}/raw?ref=${encodeURIComponent('feature/x')}`)).status).toBe(200);
    gl.deleteFile(P, 'feature/x', 'apps/a.yaml');
    expectError(await repo(`${P}/repository/files/${encodeURIComponent('apps/a.yaml')}/raw?ref=${encodeURIComponent('feature/x')}`), 404, '404 File Not Found');
    expect((await repo(`${P}/repository/files/${encodeURIComponent('apps/a.yaml')}/raw?ref=main`)).status).toBe(200);
    expect((await repo(`${P}/repository/files/${encodeURIComponent('apps/a.yaml')}/raw?ref=${before}`)).body.toString()).toBe('kind: A\n');
    expect((await repo(`${P}/repository/files/${encodeURIComponent('apps/a.yaml')}/raw?ref=${before.slice(0, 10)}`)).status).toBe(200);
    expect(() => gl.deleteFile(P, 'feature/x', 'apps/a.yaml')).toThrow(/does not exist/);
  });

  test('a wrong or missing repository token is 401; Authorization: Bearer works too; the kas JWT is not a repository credential', async () => {
    const path = `${P}/repository/files/${encodeURIComponent('apps/a.yaml')}/raw?ref=main`;
    expectError(await repo(path, 'GET', 'wrong'), 401, '401 Unauthorized');
    expectError(await repo(path, 'GET', null), 401, '401 Unauthorized');
    expectError(await request('GET', `/api/v4/projects/${path}`, { headers: { 'Gitlab-Kas-Api-Request': await kasJwt() } }), 401, '401 Unauthorized');
    expect((await request('GET', `/api/v4/projects/${path}`, { headers: { Authorization: `Bearer ${gl.repositoryToken}` } })).status).toBe(200);
  });

  test('an unknown project is 404 Project Not Found', async () => {
    expectError(await repo(`${encodeURIComponent('no/such')}/repository/files/x/raw?ref=main`), 404, '404 Project Not Found');
  });

  test('setFile on a project that was not added is a set-up error', () => {
    expect(() => gl.setFile(987654, 'main', 'x', 'y')).toThrow(/was not added/);
  });
});

describe('repository tree', () => {
  const P = 500;
  beforeAll(() => {
    gl.addProject({ id: P, fullPath: 'acme/tree' });
    for (const f of ['a/1.yaml', 'a/2.yaml', 'a/b/3.yaml', 'c.json', 'd/4.yml']) gl.setFile(P, 'main', f, `file ${f}\n`);
  });

  test('recursive, paginated as GitLab: directories first, then files; X-* headers and Link', async () => {
    const page1 = await repo(`${P}/repository/tree?ref=main&recursive=true&per_page=3`);
    expect(page1.status).toBe(200);
    expect(page1.headers).toMatchObject({ 'x-page': '1', 'x-per-page': '3', 'x-total': '8', 'x-total-pages': '3', 'x-next-page': '2', 'x-prev-page': '' });
    expect(page1.headers.link).toContain('rel="next"');
    expect(page1.json).toEqual([
      { id: expect.stringMatching(/^[0-9a-f]{40}$/), name: 'a', type: 'tree', path: 'a', mode: '040000' },
      { id: expect.any(String), name: 'b', type: 'tree', path: 'a/b', mode: '040000' },
      { id: expect.any(String), name: 'd', type: 'tree', path: 'd', mode: '040000' },
    ]);
    const page3 = await repo(`${P}/repository/tree?ref=main&recursive=true&per_page=3&page=3`);
    expect(page3.headers).toMatchObject({ 'x-page': '3', 'x-next-page': '', 'x-prev-page': '2' });
    expect(page3.json).toEqual([
      { id: gitBlobId('file c.json\n'), name: 'c.json', type: 'blob', path: 'c.json', mode: '100644' },
      { id: gitBlobId('file d/4.yml\n'), name: '4.yml', type: 'blob', path: 'd/4.yml', mode: '100644' },
    ]);
    const beyond = await repo(`${P}/repository/tree?ref=main&recursive=true&per_page=3&page=9`);
    expect(beyond.json).toEqual([]);
  });

  test('a sub-path, not recursive; pagination=none lists everything of a recursive listing', async () => {
    const a = await repo(`${P}/repository/tree?ref=main&path=a`);
    expect((a.json as Array<{ path: string }>).map((e) => e.path)).toEqual(['a/b', 'a/1.yaml', 'a/2.yaml']);
    expect(a.headers['x-per-page']).toBe('20');
    const all = await repo(`${P}/repository/tree?ref=main&recursive=true&pagination=none`);
    expect(all.json).toHaveLength(8);
    expect(all.headers['x-total']).toBeUndefined();
  });

  test('tree ids are real git tree ids: they change exactly when something below changes', async () => {
    const ids = async () => Object.fromEntries(((await repo(`${P}/repository/tree?ref=main&recursive=true&pagination=none`)).json as Array<{ path: string; id: string }>).map((e) => [e.path, e.id]));
    const before = await ids();
    gl.setFile(P, 'main', 'd/4.yml', 'changed\n');
    const after = await ids();
    expect(after.a).toBe(before.a);
    expect(after.d).not.toBe(before.d);
  });

  test('an unknown ref or path is 404 Tree Not Found; a bad page is 400', async () => {
    expectError(await repo(`${P}/repository/tree?ref=nope`), 404, '404 Tree Not Found');
    expectError(await repo(`${P}/repository/tree?ref=main&path=zzz`), 404, '404 Tree Not Found');
    expectError(await repo(`${P}/repository/tree?ref=main&page=x`), 400, '400 Bad request - page is invalid');
  });
});

describe('repository branches', () => {
  test('the head commit of a branch (also one with a slash, URL-encoded)', async () => {
    const a = await repo(`${MANIFEST_PROJECT}/repository/branches/main`);
    expect(a).toMatchObject({ status: 200, json: { name: 'main', default: true, commit: { id: gl.headCommit(MANIFEST_PROJECT, 'main') } } });
    const b = await repo(`${encodeURIComponent('acme/manifests')}/repository/branches/${encodeURIComponent('feature/x')}`);
    expect(b).toMatchObject({ status: 200, json: { name: 'feature/x', default: false, commit: { id: gl.headCommit(MANIFEST_PROJECT, 'feature/x'), parent_ids: [expect.any(String)] } } });
  });

  test('an unknown branch is 404 Branch Not Found', async () => {
    expectError(await repo(`${MANIFEST_PROJECT}/repository/branches/nope`), 404, '404 Branch Not Found');
  });
});

describe('routing', () => {
  test('unknown paths are 404 Not Found; a known path with another method is 405', async () => {
    expectError(await request('GET', '/api/v4/nothing/here'), 404, '404 Not Found');
    expectError(await request('GET', '/somewhere'), 404, '404 Not Found');
    expectError(await request('GET', '/api/v4/internal/kubernetes/nope'), 404, '404 Not Found');
    expectError(await request('DELETE', '/api/v4/internal/kubernetes/agent_info'), 405, '405 Method Not Allowed');
  });

  test('calls are recorded with method, path, query, lower-cased headers and the parsed body', async () => {
    await request('GET', '/api/v4/job/allowed_agents?x=1&y=2&y=3', { headers: { 'X-Custom': 'v' } });
    expect(lastCall()).toMatchObject({ method: 'GET', path: '/api/v4/job/allowed_agents', query: { x: '1', y: ['2', '3'] }, body: null, status: 401, jwtOk: null });
    expect(lastCall().headers['x-custom']).toBe('v');
  });
});

describe('failure injection', () => {
  test('failNext answers the next N calls with the status, then normal service resumes', async () => {
    gl.failNext('/internal/kubernetes/agent_info', 502, 2);
    gl.failNext('/api/v4/job/allowed_agents', 429, 1, { 'Retry-After': '1' });
    const from = gl.calls.length;
    expectError(await agentInfo('glagent-prod-token'), 502, '502 Bad Gateway');
    expectError(await agentInfo('glagent-prod-token'), 502, '502 Bad Gateway');
    expect((await agentInfo('glagent-prod-token')).status).toBe(200);
    const limited = await request('GET', '/api/v4/job/allowed_agents', { headers: { 'Job-Token': 'job-token-1' } });
    expect({ status: limited.status, retryAfter: limited.headers['retry-after'] }).toEqual({ status: 429, retryAfter: '1' });
    expect(gl.calls.slice(from).map((c) => c.status)).toEqual([502, 502, 200, 429]);
    expect(gl.calls.slice(from, from + 3).every((c) => c.jwtOk === true)).toBe(true);
  });

  test('failNext with a RegExp matches repository paths', async () => {
    gl.failNext(/\/repository\/files\//, 500);
    expectError(await repo(`${MANIFEST_PROJECT}/repository/files/${encodeURIComponent('apps/a.yaml')}/raw?ref=main`), 500, '500 Internal Server Error');
    expect((await repo(`${MANIFEST_PROJECT}/repository/files/${encodeURIComponent('apps/a.yaml')}/raw?ref=main`)).status).toBe(200);
  });

  test('delayNext holds the answer; the call is recorded as pending meanwhile; waitForCall sees it answered', async () => {
    gl.delayNext('/internal/kubernetes/agent_info', 300);
    const from = gl.calls.length;
    const started = Date.now();
    const pending = agentInfo('glagent-prod-token');
    const seen = gl.waitForCall('/internal/kubernetes/agent_info', { fromIndex: from });
    await new Promise((r) => setTimeout(r, 100));
    expect(gl.calls[from]?.status).toBe(0);
    expect((await pending).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect((await seen).status).toBe(200);
    expect(gl.callsTo('/api/v4/internal/kubernetes/agent_info').length).toBeGreaterThan(0);
  });

  test('waitForCall says what it waited for when nothing comes', async () => {
    await expect(gl.waitForCall('/never', { fromIndex: gl.calls.length, timeoutMs: 50 })).rejects.toThrow(/no call matching \/never within 50 ms/);
  });
});

describe('TLS', () => {
  test('with tls: true it serves HTTPS with a certificate for 127.0.0.1, given as caPem', async () => {
    const tls = await startFakeGitLab({ tls: true, secret: gl.secret });
    try {
      expect(tls.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(tls.caPem).toContain('BEGIN CERTIFICATE');
      tls.addAgent({ id: 1, name: 'tls', projectId: 1, token: 'glagent-tls' });
      const a = await agentInfo('glagent-tls', { fake: tls });
      expect(a).toMatchObject({ status: 200, json: { agent_name: 'tls' } });
    } finally {
      await tls.close();
    }
    expect(gl.caPem).toBeNull();
  });
});

describe('GitLab → kas JWT helpers', () => {
  const kasVerify = (token: string) => jwtVerify(token, gl.secret, { algorithms: ['HS256', 'HS384', 'HS512'], audience: 'gitlab-kas', requiredClaims: ['exp', 'nbf', 'iat'] });

  test('gitlabToKasJwt signs as GitLab does: HS256, aud gitlab-kas, iss the host, jti, nbf = iat − 5, exp = iat + 60', async () => {
    const token = gitlabToKasJwt(gl.secret);
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'HS256', typ: 'JWT' });
    const { payload } = await kasVerify(token);
    expect(payload).toMatchObject({ aud: 'gitlab-kas', iss: GITLAB_TO_KAS_ISSUER, jti: expect.any(String) });
    expect(payload.nbf).toBe(payload.iat! - 5);
    expect(payload.exp).toBe(payload.iat! + 60);
    expect(Math.abs(payload.iat! - Date.now() / 1000)).toBeLessThan(5);
    expect(gitlabToKasJwt(gl.secret)).not.toBe(token);
  });

  test('overrides change claims, the algorithm and the key', async () => {
    const hs512 = gitlabToKasJwt(gl.secret, { alg: 'HS512', iss: 'gitlab.acme.test', sub: 'x' });
    expect(decodeProtectedHeader(hs512).alg).toBe('HS512');
    expect((await kasVerify(hs512)).payload).toMatchObject({ iss: 'gitlab.acme.test', sub: 'x' });
    expect(decodeProtectedHeader(unsignedJwt()).alg).toBe('none');
    expect(unsignedJwt().endsWith('.')).toBe(true);
  });

  test.each(Object.entries(gitlabToKasAttackJwts(new Uint8Array(32).fill(1))).map(([name]) => [name]))('attack %s is refused by a verifier that follows the contract', async (name) => {
    const secret = new Uint8Array(32).fill(1);
    const token = gitlabToKasAttackJwts(secret)[name as keyof ReturnType<typeof gitlabToKasAttackJwts>];
    await expect(jwtVerify(token, secret, { algorithms: ['HS256', 'HS384', 'HS512'], audience: 'gitlab-kas', requiredClaims: ['exp'] })).rejects.toThrow();
  });
});
