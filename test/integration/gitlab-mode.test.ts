/**
 * GitLab mode end to end on loopback: a fake GitLab that follows the contract (and verifies kas's
 * JWTs), a real kas in GitLab mode, a real agentk, an upstream standing in for the API server.
 */
import http from 'node:http';
import tls from 'node:tls';
import { WebSocket } from 'ws';
import { gitlabToKasAttackJwts, gitlabToKasJwt, startFakeGitLab, type FakeGitLab } from '../support/fake-gitlab.js';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { rawHeaderValues } from '../support/headers.js';
import { readAll } from '../support/streams.js';
import { proxyRequest, startStack, type Stack } from '../support/stack.js';
import { waitFor } from '../support/wait.js';

const AGENT_TOKEN = 'glagent-prod-token-0123456789abcdefghij';
const PROJECT = 42;

interface Seen {
  url: string;
  raw: string[];
}


describe('kas in GitLab mode', () => {
  let gl: FakeGitLab;
  let upstream: FakeKubeApi;
  let stack: Stack;
  const seen: Seen[] = [];

  beforeAll(async () => {
    gl = await startFakeGitLab({ tls: true });
    gl.addProject({ id: PROJECT, fullPath: 'acme/clusters' });
    gl.addAgent({ id: 1, name: 'prod', projectId: PROJECT, token: AGENT_TOKEN });
    gl.addAgent({ id: 2, name: 'staging', projectId: PROJECT, token: 'glagent-staging-never-connects' });
    gl.addUser({ id: 100, username: 'alice', pat: ['glpat-alice'], sessionCookie: { value: 'cookie-alice', csrfToken: 'csrf-alice' } });
    gl.addUser({ id: 101, username: 'bob', pat: ['glpat-bob'] });
    gl.setUserAccess(1, 100, { access_as: { user: { projects: [{ id: PROJECT, roles: ['developer'] }], groups: [{ id: 7, roles: ['maintainer'] }] } }, configProjectId: PROJECT });
    gl.setUserAccess(1, 101, { access_as: { agent: {} }, configProjectId: PROJECT });
    gl.addCiJob({
      token: 'job-token-ci-job',
      jobId: 555,
      pipelineId: 66,
      projectId: 43,
      groups: [7, 8],
      user: { id: 100, username: 'alice', roles_in_project: ['developer'] },
      environment: { slug: 'production', tier: 'production' },
      allowedAgents: [{ id: 1, configProjectId: PROJECT, configuration: { access_as: { ci_job: {} } } }],
    });
    gl.addCiJob({
      token: 'job-token-impersonate',
      jobId: 556,
      pipelineId: 67,
      projectId: 43,
      groups: [],
      user: { id: 101, username: 'bob', roles_in_project: [] },
      allowedAgents: [{ id: 1, configProjectId: PROJECT, configuration: { access_as: { impersonate: { username: 'deployer', groups: ['deployers'], extra: [{ key: 'team', val: ['a', 'b'] }] } } } }],
    });
    upstream = await startFakeKubeApi({
      handler: (req, res) => {
        seen.push({ url: req.url!, raw: req.rawHeaders });
        req.resume();
        req.on('end', () => res.end('ok'));
      },
    });
    stack = await startStack({
      upstream,
      gitlab: { url: gl.url, caPem: gl.caPem, secretFileContent: gl.secretFileContent, repositoryToken: gl.repositoryToken, agentToken: AGENT_TOKEN },
      kas: { agent: { kubernetes_api: { agent_wait_timeout: '1s' } }, observability: { usage_report_period: '1s' } },
    });
  });

  afterAll(async () => {
    await stack?.close();
    await upstream?.close();
    await gl?.close();
  });

  beforeEach(() => {
    seen.length = 0;
  });

  test('the agent is authenticated by agent_info with a valid kas JWT, once for its concurrent connections', async () => {
    await stack.waitForAgent(2);
    const calls = gl.callsTo('/internal/kubernetes/agent_info');
    expect(calls.length).toBe(1);
    expect(calls[0]!.jwtOk).toBe(true);
    expect(calls[0]!.headers.authorization).toBe(`Bearer ${AGENT_TOKEN}`);
    const conn = stack.kas.registry.connections(1)[0]!;
    expect(conn.identity).toMatchObject({ agentId: 1, agentName: 'prod', projectId: PROJECT });
    expect(stack.kasLogs.text).not.toContain(AGENT_TOKEN);
  });

  test('an unknown agent token is refused with 401 before the WebSocket is accepted, and the refusal is cached', async () => {
    const before = gl.callsTo('/internal/kubernetes/agent_info').length;
    for (let i = 0; i < 2; i++) {
      const status = await new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`wss://${stack.kas.addresses.agent}/`, { headers: { Authorization: 'Bearer glagent-unknown' }, ca: stack.proxyCa });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => reject(new Error('the connection was accepted')));
        ws.on('error', () => undefined);
      });
      expect(status).toBe(401);
    }
    expect(gl.callsTo('/internal/kubernetes/agent_info').length).toBe(before + 1);
  });

  test('personal access token, access_as agent: no impersonation, the agent credentials reach the API server', async () => {
    const res = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer pat:1:glpat-bob' });
    expect((await readAll(res)).toString()).toBe('ok');
    expect(rawHeaderValues(seen[0]!.raw, 'authorization')).toEqual([`Bearer ${upstream.token}`]);
    expect(seen[0]!.raw.filter((h, i) => i % 2 === 0 && h.toLowerCase().startsWith('impersonate-'))).toEqual([]);
    const call = gl.callsTo('/internal/kubernetes/authorize_proxy_user').at(-1)!;
    expect(call.jwtOk).toBe(true);
    expect(call.body).toMatchObject({ agent_id: '1', access_type: 'personal_access_token', access_key: 'glpat-bob' });
  });

  test('personal access token, access_as user: impersonates the GitLab user with project and group roles', async () => {
    const res = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer pat:1:glpat-alice' });
    await readAll(res);
    const raw = seen[0]!.raw;
    expect(rawHeaderValues(raw, 'impersonate-user')).toEqual(['gitlab:user:alice']);
    expect(rawHeaderValues(raw, 'impersonate-group')).toEqual(['gitlab:user', `gitlab:project_role:${PROJECT}:developer`, 'gitlab:group_role:7:maintainer']);
    expect(rawHeaderValues(raw, 'impersonate-extra-agent.gitlab.com%2fid')).toEqual(['1']);
    expect(rawHeaderValues(raw, 'impersonate-extra-agent.gitlab.com%2fusername')).toEqual(['alice']);
    expect(rawHeaderValues(raw, 'impersonate-extra-agent.gitlab.com%2faccess_type')).toEqual(['personal_access_token']);
    expect(rawHeaderValues(raw, 'impersonate-extra-agent.gitlab.com%2fconfig_project_id')).toEqual([String(PROJECT)]);
  });

  test('a GitLab session cookie with agent id and CSRF token, as headers or as query parameters', async () => {
    const viaHeaders = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: null, headers: { cookie: '_gitlab_kas=cookie-alice', 'gitlab-agent-id': '1', 'x-csrf-token': 'csrf-alice' } });
    expect(viaHeaders.statusCode).toBe(200);
    await readAll(viaHeaders);
    const viaQuery = await proxyRequest(stack, 'GET', '/api/v1/pods?gitlab-agent-id=1&gitlab-csrf-token=csrf-alice&limit=5', { auth: null, headers: { cookie: 'other=1; _gitlab_kas=cookie-alice' } });
    expect(viaQuery.statusCode).toBe(200);
    await readAll(viaQuery);
    expect(seen.map((s) => s.url)).toEqual(['/api/v1/pods', '/api/v1/pods?limit=5']);
    expect(rawHeaderValues(seen[1]!.raw, 'cookie')).toEqual([]);
    expect(rawHeaderValues(seen[0]!.raw, 'impersonate-extra-agent.gitlab.com%2faccess_type')).toEqual(['session_cookie']);
    const wrongCsrf = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: null, headers: { cookie: '_gitlab_kas=cookie-alice', 'gitlab-agent-id': '1', 'x-csrf-token': 'forged' } });
    expect(wrongCsrf.statusCode).toBe(401);
    expect(wrongCsrf.headers['gitlab-unauthorized']).toBe('true');
  });

  test('a malformed _gitlab_kas cookie is no credential: 401 at once, for plain requests and upgrades alike', async () => {
    // Regression: decodeURIComponent threw inside authorization, nothing answered, and the
    // connection stayed open (anyone could pile them up without credentials).
    for (const cookie of ['_gitlab_kas=%', '_gitlab_kas=%E0%A4%A', 'other=1; _gitlab_kas=%zz']) {
      const res = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: null, headers: { cookie, 'gitlab-agent-id': '1', 'x-csrf-token': 'csrf-alice' } });
      const status = JSON.parse((await readAll(res)).toString()) as { kind: string; code: number };
      expect([cookie, res.statusCode]).toEqual([cookie, 401]);
      expect(status).toMatchObject({ kind: 'Status', code: 401 });
      expect(res.headers['gitlab-unauthorized']).toBe('true');

      const url = new URL(stack.proxyUrl);
      const answer = await new Promise<string>((resolve, reject) => {
        const sock = tls.connect({ host: url.hostname, port: Number(url.port), ca: stack.proxyCa, servername: 'localhost' }, () => {
          sock.write(`GET /api/v1/namespaces/default/pods/demo/exec HTTP/1.1\r\nHost: kas\r\nCookie: ${cookie}\r\nGitlab-Agent-Id: 1\r\nX-Csrf-Token: csrf-alice\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n`);
        });
        const got: Buffer[] = [];
        sock.on('data', (c: Buffer) => got.push(c));
        sock.on('error', reject);
        sock.on('close', () => resolve(Buffer.concat(got).toString()));
      });
      expect([cookie, answer.split('\r\n')[0]]).toEqual([cookie, 'HTTP/1.1 401 Unauthorized']);
    }
    expect(seen).toEqual([]);
    expect(stack.kasLogs.text).not.toContain('proxy request failed unexpectedly');
  });

  test('a CI job token with access_as ci_job impersonates the job with its groups, environment and extras', async () => {
    const res = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer ci:1:job-token-ci-job' });
    await readAll(res);
    const raw = seen[0]!.raw;
    expect(rawHeaderValues(raw, 'impersonate-user')).toEqual(['gitlab:ci_job:555']);
    expect(rawHeaderValues(raw, 'impersonate-group')).toEqual([
      'gitlab:ci_job',
      'gitlab:group:7',
      'gitlab:group:8',
      'gitlab:project:43',
      'gitlab:project_env:43:production',
      'gitlab:project_env_tier:43:production',
      'gitlab:group_env_tier:7:production',
      'gitlab:group_env_tier:8:production',
    ]);
    expect(rawHeaderValues(raw, 'impersonate-extra-agent.gitlab.com%2fci_job_id')).toEqual(['555']);
    expect(rawHeaderValues(raw, 'impersonate-extra-agent.gitlab.com%2fci_pipeline_id')).toEqual(['66']);
    expect(rawHeaderValues(raw, 'impersonate-extra-agent.gitlab.com%2fproject_id')).toEqual(['43']);
    expect(rawHeaderValues(raw, 'impersonate-extra-agent.gitlab.com%2fconfig_project_id')).toEqual([String(PROJECT)]);
    expect(rawHeaderValues(raw, 'impersonate-extra-agent.gitlab.com%2fusername')).toEqual(['alice']);
    const call = gl.callsTo('/job/allowed_agents').at(-1)!;
    expect(call.headers['job-token']).toBe('job-token-ci-job');
  });

  test('a CI job token with access_as impersonate acts as exactly that identity', async () => {
    const res = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer ci:1:job-token-impersonate' });
    await readAll(res);
    const raw = seen[0]!.raw;
    expect(rawHeaderValues(raw, 'impersonate-user')).toEqual(['deployer']);
    expect(rawHeaderValues(raw, 'impersonate-group')).toEqual(['deployers']);
    expect(rawHeaderValues(raw, 'impersonate-extra-team')).toEqual(['a', 'b']);
  });

  test('a CI job not allowed to use the agent gets 403; a client Impersonate header under an impersonating credential gets 403', async () => {
    const notAllowed = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer ci:2:job-token-ci-job' });
    expect(notAllowed.statusCode).toBe(403);
    const nested = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer pat:1:glpat-alice', headers: { 'impersonate-user': 'root' } });
    expect(nested.statusCode).toBe(403);
    expect(seen).toEqual([]);
  });

  test('every refusal from GitLab becomes the same 401 with Gitlab-Unauthorized: true, and the agent is never contacted', async () => {
    for (const auth of ['Bearer pat:1:glpat-unknown', 'Bearer pat:999:glpat-alice', 'Bearer ci:1:job-token-unknown', 'Bearer pat:1:', 'Bearer not-a-credential']) {
      const res = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth });
      const body = JSON.parse((await readAll(res)).toString()) as { kind: string; code: number };
      expect([auth, res.statusCode]).toEqual([auth, 401]);
      expect(res.headers['gitlab-unauthorized']).toBe('true');
      expect(body).toMatchObject({ kind: 'Status', code: 401 });
    }
    expect(seen).toEqual([]);
  });

  test('concurrent requests with one credential make one GitLab call; a GitLab failure (5xx) is not cached', async () => {
    const before = gl.callsTo('/internal/kubernetes/authorize_proxy_user').length;
    const results = await Promise.all(Array.from({ length: 20 }, () => proxyRequest(stack, 'GET', '/api/v1/x', { auth: 'Bearer pat:1:glpat-fresh-credential' }).then((r) => r.statusCode)));
    expect(new Set(results)).toEqual(new Set([401]));
    expect(gl.callsTo('/internal/kubernetes/authorize_proxy_user').length).toBe(before + 1);

    gl.addUser({ id: 102, username: 'carol', pat: ['glpat-carol'] });
    gl.setUserAccess(1, 102, { access_as: { agent: {} }, configProjectId: PROJECT });
    gl.failNext('/internal/kubernetes/authorize_proxy_user', 500, 3);
    const failed = await proxyRequest(stack, 'GET', '/api/v1/x', { auth: 'Bearer pat:1:glpat-carol' });
    expect(failed.statusCode).toBe(503);
    const ok = await proxyRequest(stack, 'GET', '/api/v1/x', { auth: 'Bearer pat:1:glpat-carol' });
    expect(ok.statusCode).toBe(200);
    await readAll(ok);
  });

  test('GitLab itself may call the proxy with a JWT it signed (aud gitlab-kas); forged ones are refused', async () => {
    const good = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: `Bearer ${gitlabToKasJwt(gl.secret)}`, headers: { 'gitlab-agent-id': '1' } });
    expect(good.statusCode).toBe(200);
    await readAll(good);
    for (const [name, jwt] of Object.entries(gitlabToKasAttackJwts(gl.secret))) {
      const res = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: `Bearer ${jwt}`, headers: { 'gitlab-agent-id': '1' } });
      expect([name, res.statusCode]).toEqual([name, 401]);
    }
  });

  test('CORS: only GitLab\'s origin, preflight answered by kas', async () => {
    const origin = new URL(gl.url).origin;
    const preflight = await proxyRequest(stack, 'OPTIONS', '/api/v1/pods', { auth: null, headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-csrf-token, gitlab-agent-id' } });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe(origin);
    expect(preflight.headers['access-control-allow-credentials']).toBe('true');
    expect(preflight.headers['access-control-allow-headers']).toBe('x-csrf-token, gitlab-agent-id');
    const other = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer pat:1:glpat-bob', headers: { origin: 'https://evil.example' } });
    expect(other.statusCode).toBe(403);
    const same = await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer pat:1:glpat-bob', headers: { origin } });
    expect(same.headers['access-control-allow-origin']).toBe(origin);
    await readAll(same);
  });

  describe('the API for GitLab', () => {
    function api(path: string, init: { method?: string; jwt?: string | null; body?: unknown } = {}): Promise<{ status: number; body: unknown }> {
      return new Promise((resolve, reject) => {
        const payload = init.body === undefined ? undefined : Buffer.from(JSON.stringify(init.body));
        const headers: Record<string, string> = {};
        const jwt = init.jwt === undefined ? gitlabToKasJwt(gl.secret) : init.jwt;
        if (jwt !== null) headers.authorization = `Bearer ${jwt}`;
        if (payload) {
          headers['content-type'] = 'application/json';
          headers['content-length'] = String(payload.length);
        }
        const req = http.request(`http://${stack.kas.addresses.api}${path}`, { method: init.method ?? 'GET', headers, agent: false }, (res) => {
          readAll(res).then((b) => resolve({ status: res.statusCode ?? 0, body: b.length ? (JSON.parse(b.toString()) as unknown) : null }), reject);
        });
        req.on('error', reject);
        req.end(payload);
      });
    }

    test('connected_agents by agent id and by project id, with the agent metadata', async () => {
      await stack.waitForAgent(2);
      const byAgent = (await api('/api/v1/connected_agents?agent_id=1&agent_id=2')) as { status: number; body: { agents: Array<{ agent_id: number; project_id: number; connections: Array<{ agent_meta: Record<string, string>; connected_at: string }> }> } };
      expect(byAgent.status).toBe(200);
      expect(byAgent.body.agents.map((a) => a.agent_id)).toEqual([1]);
      expect(byAgent.body.agents[0]!.project_id).toBe(PROJECT);
      expect(byAgent.body.agents[0]!.connections).toHaveLength(2);
      expect(Object.keys(byAgent.body.agents[0]!.connections[0]!.agent_meta).sort()).toEqual(['architecture', 'commit', 'extra_telemetry', 'kubernetes_version', 'pod_name', 'pod_namespace', 'pod_uid', 'registered_at', 'version']);
      const byProject = (await api(`/api/v1/connected_agents?project_id=${PROJECT}`)) as { body: { agents: Array<{ agent_id: number }> } };
      expect(byProject.body.agents.map((a) => a.agent_id)).toEqual([1]);
      expect((await api('/api/v1/connected_agents?agent_id=x')).status).toBe(400);
    });

    test('server_info, git_push_event and agent_config_files', async () => {
      const info = (await api('/api/v1/server_info')) as { status: number; body: Record<string, string> };
      expect(info.status).toBe(200);
      expect(Object.keys(info.body).sort()).toEqual(['build_time', 'commit', 'version']);
      expect((await api('/api/v1/git_push_event', { method: 'POST', body: { project: { id: PROJECT, full_path: 'acme/clusters' } } })).status).toBe(204);
      expect((await api('/api/v1/git_push_event', { method: 'POST', body: { project: {} } })).status).toBe(400);
      gl.setFile(PROJECT, 'main', '.gitlab/agents/prod/config.yaml', 'observability: {logging: {level: info}}\n');
      gl.setFile(PROJECT, 'main', '.gitlab/agents/Not_A_Name/config.yaml', '');
      gl.setFile(PROJECT, 'main', '.gitlab/agents/prod/other.yaml', '');
      const files = (await api(`/api/v1/agent_config_files?project_id=${PROJECT}`)) as { status: number; body: unknown };
      expect(files).toEqual({ status: 200, body: { config_files: [{ agent_name: 'prod', path: '.gitlab/agents/prod/config.yaml' }] } });
    });

    test('JWT attacks on the API listener are all refused with 401', async () => {
      for (const [name, jwt] of Object.entries(gitlabToKasAttackJwts(gl.secret))) {
        const res = await api('/api/v1/server_info', { jwt });
        expect([name, res.status]).toEqual([name, 401]);
        expect(res.body).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
      }
      expect((await api('/api/v1/server_info', { jwt: null })).status).toBe(401);
    });
  });

  test('usage metrics are sent to GitLab every period with counters by credential kind', async () => {
    type Usage = { counters: Record<string, number>; unique_counters: Record<string, number[]> };
    const sentSince = (n: number) => (gl.usageMetrics.slice(n) as Usage[]).filter((u) => (u.counters.k8s_api_proxy_requests_via_pat_access ?? 0) > 0);
    const before = gl.usageMetrics.length;
    await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer pat:1:glpat-bob' }).then(readAll);
    await waitFor(() => sentSince(before).length > 0, 'a usage_metrics call that counts the request');
    const sent = sentSince(before)[0]!;
    expect(sent.counters.k8s_api_proxy_request).toBeGreaterThan(0);
    expect(sent.unique_counters.k8s_api_proxy_requests_unique_users_via_pat_access).toEqual(expect.arrayContaining([101]));
    expect(gl.callsTo('/internal/kubernetes/usage_metrics').every((c) => c.jwtOk)).toBe(true);
  });
});

describe('agent token revocation in GitLab mode', () => {
  test('a revoked token closes the live sessions within the success TTL and the agent cannot reconnect', async () => {
    const gl = await startFakeGitLab();
    gl.addProject({ id: PROJECT, fullPath: 'acme/clusters' });
    gl.addAgent({ id: 1, name: 'prod', projectId: PROJECT, token: AGENT_TOKEN });
    const upstream = await startFakeKubeApi({ handler: (_req, res) => res.end('ok') });
    const stack = await startStack({
      upstream,
      gitlab: { url: gl.url, caPem: gl.caPem, secretFileContent: gl.secretFileContent, repositoryToken: gl.repositoryToken, agentToken: AGENT_TOKEN },
      kas: { agent: { info_cache_ttl: '2s', info_cache_error_ttl: '1s' } },
    });
    try {
      await stack.waitForAgent(2);
      gl.revokeAgentToken(AGENT_TOKEN);
      await waitFor(() => stack.kas.registry.connectionCount === 0, 'the sessions of the revoked agent to close');
      expect(stack.kasLogs.text).toContain('agent token is no longer valid');
      // agentk keeps trying; kas keeps refusing (401), so the agent stays disconnected.
      await new Promise((r) => setTimeout(r, 1500));
      expect(stack.kas.registry.connectionCount).toBe(0);
    } finally {
      await stack.close();
      await upstream.close();
      await gl.close();
    }
  });

  test('usage metrics left over are sent on shutdown', async () => {
    const gl = await startFakeGitLab();
    gl.addProject({ id: PROJECT, fullPath: 'acme/clusters' });
    gl.addAgent({ id: 1, name: 'prod', projectId: PROJECT, token: AGENT_TOKEN });
    gl.addUser({ id: 101, username: 'bob', pat: ['glpat-bob'] });
    gl.setUserAccess(1, 101, { access_as: { agent: {} }, configProjectId: PROJECT });
    const upstream = await startFakeKubeApi({ handler: (_req, res) => res.end('ok') });
    const stack = await startStack({ upstream, gitlab: { url: gl.url, caPem: gl.caPem, secretFileContent: gl.secretFileContent, repositoryToken: gl.repositoryToken, agentToken: AGENT_TOKEN } });
    try {
      await proxyRequest(stack, 'GET', '/api/v1/pods', { auth: 'Bearer pat:1:glpat-bob' }).then(readAll);
      expect(gl.usageMetrics).toEqual([]);
      await stack.kas.shutdown(1000);
      expect(gl.usageMetrics).toEqual([{ counters: { k8s_api_proxy_request: 1, k8s_api_proxy_requests_via_pat_access: 1 }, unique_counters: { k8s_api_proxy_requests_unique_users_via_pat_access: [101], k8s_api_proxy_requests_unique_agents_via_pat_access: [1] } }]);
    } finally {
      await stack.close();
      await upstream.close();
      await gl.close();
    }
  });
});
