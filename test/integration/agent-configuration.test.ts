/**
 * The agent configuration feature end to end: kas reads the agent's `config.yaml` (standalone:
 * `<standalone.config_dir>/<agent-name>/config.yaml`; GitLab mode: the configuration project's default
 * branch in a fake GitLab), validates it and pushes it over the tunnel to a real agentk, which changes
 * its log level live. A broken file keeps the last valid configuration in force and is reported.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Agentk } from '../../src/agent/app.js';
import type { AgentConfigurationServer } from '../../src/broker/agent-configuration/agent-configuration.js';
import { AGENT_CONFIGURATION } from '../../src/broker/agent-configuration/module.js';
import { waitFor } from '../support/wait.js';
import { createLogger, type Logger } from '../../src/shared/logger.js';
import { startFakeGitLab, type FakeGitLab } from '../support/fake-gitlab.js';
import { startFakeKubeApi, type FakeKubeApi } from '../support/fake-kube-api.js';
import { readAll } from '../support/streams.js';
import { LogCapture } from '../support/logs.js';
import { proxyRequest, startStack, type Stack } from '../support/stack.js';

/** A metric of kas by name, as the registry holds it (every module registers its own there). */
async function metricOf(stack: Stack, name: string) {
  const metric = stack.kas.metrics.getSingleMetric(name);
  if (!metric) throw new Error(`kas has no metric ${name}`);
  return metric.get();
}

describe('agent configuration from standalone.config_dir', () => {
  let upstream: FakeKubeApi;
  let stack: Stack;
  let configs: AgentConfigurationServer;
  let agentLogger: Logger;
  let configDir: string;
  let agentFile: string;
  const extraAgents: Agentk[] = [];

  const writeConfig = (text: string) => writeFileSync(agentFile, text);
  const levelLines = (logs: LogCapture, msg: string) => logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.msg === msg);

  beforeAll(async () => {
    upstream = await startFakeKubeApi({
      handler: (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"kind":"APIVersions"}');
      },
    });
    configDir = mkdtempSync(join(tmpdir(), 'kas-agent-configs-'));
    mkdirSync(join(configDir, 'agent-one'), { recursive: true });
    agentFile = join(configDir, 'agent-one', 'config.yaml');
    writeConfig('observability:\n  logging:\n    level: debug\n');
    // A long poll period: every re-read in this test is asked for explicitly.
    stack = await startStack({ upstream, startAgent: false, kas: { standalone: { config_dir: configDir }, agent: { configuration: { poll_period: '1h' } } } });
    configs = stack.kas.service(AGENT_CONFIGURATION)!;
    expect(configs).not.toBeNull();
    // agentk starts at info (its --log-level), so a change to debug is visible.
    agentLogger = createLogger({ name: 'agentk', level: 'info', destination: stack.agentLogs });
    await stack.startAgent({ logger: agentLogger });
    await stack.waitForAgent();
  });

  afterAll(async () => {
    for (const a of extraAgents) await a.stop().catch(() => undefined);
    await stack?.close();
    await upstream?.close();
    if (configDir) rmSync(configDir, { recursive: true, force: true });
  });

  async function request(): Promise<void> {
    const res = await proxyRequest(stack, 'GET', '/api');
    expect(res.statusCode).toBe(200);
    await readAll(res);
  }

  test('the connected agent gets the configuration and logs at debug from then on', async () => {
    await waitFor(() => agentLogger.level === 'debug', 'agentk to switch its logger to debug as the configuration says');
    const status = configs.status(1);
    expect(status).toMatchObject({ valid: true, unsupported_sections: [] });
    expect(status?.commit).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(status?.applied_commit).toBe(status?.commit);
    expect(typeof status?.applied_at).toBe('string');
    // A debug line of the Kubernetes API proxy (a child logger) now reaches the captured agent logs.
    const before = levelLines(stack.agentLogs, 'relaying response').length;
    await request();
    await waitFor(() => levelLines(stack.agentLogs, 'relaying response').length > before, 'a debug line of the proxied request in agentk\'s logs');
    expect(levelLines(stack.agentLogs, 'agent configuration applied')[0]).toMatchObject({ logLevel: 'debug', previousLogLevel: 'info', commit: status?.commit });
  });

  test('a broken file keeps the last valid configuration in force and is reported', async () => {
    const good = configs.status(1)!;
    writeConfig('observability:\n  logging:\n    level: verbose\n  tracing: {}\n');
    configs.pollAgent(1);
    await waitFor(() => configs.status(1)?.valid === false, 'kas to find the broken file');
    const status = configs.status(1)!;
    expect(status.commit).not.toBe(good.commit);
    expect(status.error).toContain('observability.tracing: unknown key');
    expect(status.error).toContain('observability.logging.level: ');
    expect(status.applied_commit).toBe(good.commit);
    expect(status.applied_at).toBe(good.applied_at);
    expect(agentLogger.level).toBe('debug');
    const warning = stack.kasLogs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.msg === 'the agent configuration file is invalid; the last valid configuration stays in force');
    expect(warning).toMatchObject({ level: 40, agentId: 1, commit: status.commit });
    expect(String(warning?.error)).toContain('observability.tracing: unknown key');
    expect((await metricOf(stack, 'kas_agent_configs_invalid')).values[0]?.value).toBe(1);
    const errors = await metricOf(stack, 'kas_agent_config_errors_total');
    expect(errors.values.find((v) => v.labels.reason === 'invalid')?.value).toBe(1);
  });

  test('a fixed file is applied, and a removed one brings back agentk\'s own level', async () => {
    writeConfig('observability:\n  logging:\n    level: warn\nflux: {}\n');
    configs.pollAgent(1);
    await waitFor(() => agentLogger.level === 'warn', 'agentk to switch to warn after the file was fixed');
    expect(configs.status(1)).toMatchObject({ valid: true, unsupported_sections: ['flux'] });
    expect(configs.status(1)?.error).toBeUndefined();
    expect((await metricOf(stack, 'kas_agent_configs_invalid')).values[0]?.value).toBe(0);

    rmSync(agentFile);
    configs.pollAgent(1);
    await waitFor(() => agentLogger.level === 'info', 'agentk to go back to its --log-level when the file is gone');
    expect(configs.status(1)).toMatchObject({ commit: null, valid: true, applied_commit: null });
  });

  test('a session that connects later gets the configuration in force without a poll', async () => {
    writeConfig('observability:\n  logging:\n    level: error\n');
    configs.pollAgent(1);
    await waitFor(() => agentLogger.level === 'error', 'the first agentk to switch to error');
    const sessionsBefore = stack.kas.registry.connections(1).length;
    const lateLogs = new LogCapture();
    const lateLogger = createLogger({ name: 'agentk', level: 'info', destination: lateLogs });
    // startAgent makes the new agentk the stack's (stopped by close()); the first one is ours to stop.
    extraAgents.push(stack.agent!);
    await stack.startAgent({ logger: lateLogger, kasConnections: 1 });
    await stack.waitForAgent(sessionsBefore + 1);
    await waitFor(() => lateLogger.level === 'error', 'the agentk that connected later to get the configuration in force');
  });
});

describe('agent configuration from GitLab', () => {
  const AGENT_TOKEN = 'glagent-config-test-token-0123456789abcdef';
  const PROJECT = 42;
  const FILE = '.gitlab/agents/prod/config.yaml';
  let gl: FakeGitLab;
  let upstream: FakeKubeApi;
  let stack: Stack;
  let configs: AgentConfigurationServer;
  let agentLogger: Logger;

  beforeAll(async () => {
    gl = await startFakeGitLab();
    gl.addProject({ id: PROJECT, fullPath: 'acme/clusters', defaultBranch: 'production' });
    gl.addAgent({ id: 1, name: 'prod', projectId: PROJECT, token: AGENT_TOKEN });
    gl.setFile(PROJECT, 'production', FILE, 'observability:\n  logging:\n    level: debug\nci_access:\n  projects:\n    - id: acme/app\n      access_as: {ci_job: {}}\n');
    // The same path on another branch must not be read.
    gl.setFile(PROJECT, 'main', FILE, 'observability:\n  logging:\n    level: error\n');
    upstream = await startFakeKubeApi({ handler: (_req, res) => res.end('ok') });
    stack = await startStack({
      upstream,
      startAgent: false,
      gitlab: { url: gl.url, caPem: gl.caPem, secretFileContent: gl.secretFileContent, repositoryToken: gl.repositoryToken, agentToken: AGENT_TOKEN },
      kas: { agent: { configuration: { poll_period: '1h' } } },
    });
    configs = stack.kas.service(AGENT_CONFIGURATION)!;
    agentLogger = createLogger({ name: 'agentk', level: 'info', destination: stack.agentLogs });
    await stack.startAgent({ logger: agentLogger });
    await stack.waitForAgent();
  });

  afterAll(async () => {
    await stack?.close();
    await upstream?.close();
    await gl?.close();
  });

  test('the file on the default branch is applied by agentk and GitLab is told, with a valid kas JWT', async () => {
    await waitFor(() => agentLogger.level === 'debug', 'agentk to apply the configuration of the default branch');
    await waitFor(() => gl.agentConfigurations.length > 0, 'kas to POST agent_configuration');
    expect(gl.agentConfigurations).toEqual([
      { agent_id: '1', agent_config: { observability: { logging: { level: 'debug' } }, ci_access: { projects: [{ id: 'acme/app', access_as: { ci_job: {} } }] } } },
    ]);
    expect(gl.callsTo('/internal/kubernetes/agent_configuration').every((c) => c.jwtOk)).toBe(true);
    const reads = gl.calls.filter((c) => c.path.includes('/repository/files/'));
    expect(reads.length).toBeGreaterThan(0);
    expect(reads.every((c) => c.headers['private-token'] === gl.repositoryToken)).toBe(true);
    expect(configs.status(1)).toMatchObject({ commit: gl.headCommit(PROJECT, 'production'), valid: true });
  });

  test('a poll without a new commit makes one HEAD request and reads nothing', async () => {
    const from = gl.calls.length;
    const posts = gl.agentConfigurations.length;
    configs.pollProject(PROJECT);
    const head = await gl.waitForCall((c) => c.method === 'HEAD' && c.path.includes('/repository/files/'), { fromIndex: from });
    expect(head.query.ref).toBe('production');
    // Another poll, so the first one is certainly over when the calls are counted.
    configs.pollProject(PROJECT);
    await gl.waitForCall((c) => c.method === 'HEAD' && c.path.includes('/repository/files/'), { fromIndex: gl.calls.indexOf(head) + 1 });
    expect(gl.calls.slice(from).filter((c) => c.method === 'GET' && c.path.includes('/repository/files/'))).toEqual([]);
    expect(gl.agentConfigurations.length).toBe(posts);
  });

  test('a broken commit is reported and not sent anywhere; the next good one is', async () => {
    const posts = gl.agentConfigurations.length;
    const good = configs.status(1)!;
    const broken = gl.setFile(PROJECT, 'production', FILE, 'gitops:\n  manifest_projects:\n    - id: acme/manifests\n      pathz: [{glob: "*.yaml"}]\n');
    configs.pollProject(PROJECT);
    await waitFor(() => configs.status(1)?.commit === broken, 'kas to read the broken commit');
    expect(configs.status(1)).toMatchObject({ valid: false, error: 'gitops.manifest_projects.0.pathz: unknown key', applied_commit: good.commit });
    expect(agentLogger.level).toBe('debug');
    expect(gl.agentConfigurations.length).toBe(posts);

    const fixed = gl.setFile(PROJECT, 'production', FILE, 'observability:\n  logging:\n    level: warn\n');
    configs.pollProject(PROJECT);
    await waitFor(() => agentLogger.level === 'warn', 'agentk to apply the fixed commit');
    expect(configs.status(1)).toMatchObject({ commit: fixed, valid: true, applied_commit: fixed });
    await waitFor(() => gl.agentConfigurations.length === posts + 1, 'kas to tell GitLab the fixed configuration');
    expect(gl.agentConfigurations.at(-1)).toEqual({ agent_id: '1', agent_config: { observability: { logging: { level: 'warn' } } } });
  });

  test('a git push for another project reads nothing', async () => {
    const from = gl.calls.length;
    configs.pollProject(PROJECT + 1);
    configs.pollProject(PROJECT);
    await gl.waitForCall((c) => c.method === 'HEAD', { fromIndex: from });
    const repositoryCalls = gl.calls.slice(from).filter((c) => c.path.includes('/repository/'));
    expect(repositoryCalls.length).toBeGreaterThan(0);
    expect(repositoryCalls.every((c) => c.path.startsWith(`/api/v4/projects/${PROJECT}/`))).toBe(true);
  });
});
