/**
 * agentk as a program (cli.ts, what main.ts runs): --help, exit code 2 for bad flags with a message
 * naming the flag, and a whole run: flags and files in, connected to a fake kas, SIGTERM, exit 0.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { Agentk } from './app.js';
import { EXIT_BAD_CONFIGURATION, EXIT_OK, runAgentk } from './cli.js';
import { FakeKas } from './testing/fake-kas.js';
import { startFakeKubeApi } from '../../test/support/fake-kube-api.js';
import { LogCapture } from '../../test/support/logs.js';

function io() {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  return {
    io: { stdout, stderr, onShutdownSignal: () => () => {} },
    get out() {
      return out;
    },
    get err() {
      return err;
    },
  };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'agentk-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A HOME of the test's own (never the real one) whose ~/.kube/config holds `content`. */
function homeWithKubeconfig(name: string, content: string): string {
  const home = join(dir, name);
  mkdirSync(join(home, '.kube'), { recursive: true });
  writeFileSync(join(home, '.kube', 'config'), content);
  return home;
}

function brokenHome(): string {
  return homeWithKubeconfig('broken-home', 'clusters: [unclosed\n');
}

test('--help prints the flags and exits 0', async () => {
  const t = io();
  expect(await runAgentk(['--help'], {}, t.io)).toBe(EXIT_OK);
  expect(t.out).toContain('Usage: agentk --kas-address');
  expect(t.out).toContain('--observability-listen-address');
  expect(t.err).toBe('');
});

test.each([
  [['--kas-connections', 'many', '--kas-address', 'wss://kas/'], {}, '--kas-connections'],
  [['--token-file', '/nowhere'], {}, '--kas-address'],
  [['--kas-address', 'wss://kas/'], {}, '--token-file'],
  [['--kas-address', 'wss://kas/', '--token-file', '/nonexistent/token'], {}, '--token-file'],
  [['--kas-address', 'wss://kas/', '--kas-ca-cert-file', '/nonexistent/ca.pem'], { AGENTK_TOKEN: 't' }, '--kas-ca-cert-file'],
  [['--kas-address', 'wss://kas/', '--kubeconfig', '/nonexistent/kubeconfig'], { AGENTK_TOKEN: 't' }, '--kubeconfig'],
  [['--kas-address', 'wss://kas/'], { AGENTK_TOKEN: 't', KUBECONFIG: `/nonexistent/a${delimiter}/nonexistent/b` }, 'KUBECONFIG'],
  [['--kas-address', 'wss://kas/'], { AGENTK_TOKEN: 't', HOME: '<a home whose ~/.kube/config is not YAML>' }, '~/.kube/config'],
])('bad flags %j (environment %j) exit 2 with a message naming %s', async (argv, env, flag) => {
  const t = io();
  if ('HOME' in env) env = { ...env, HOME: brokenHome() };
  expect(await runAgentk(argv, env, t.io)).toBe(EXIT_BAD_CONFIGURATION);
  expect(t.err).toMatch(new RegExp(`^agentk: ${flag}: `));
  expect(t.err).toContain('agentk --help');
  expect(t.out).toBe('');
});

test('outside a cluster without --kubeconfig agentk exits 2 naming --kubeconfig', async () => {
  const t = io();
  expect(await runAgentk(['--kas-address', 'wss://kas/'], { AGENTK_TOKEN: 'x' }, t.io)).toBe(EXIT_BAD_CONFIGURATION);
  expect(t.err).toMatch(/^agentk: --kubeconfig: not running in a cluster/);
});

test('a whole run: flags, token file, kubeconfig; connects with the pod metadata; SIGTERM drains and exits 0', async () => {
  const kas = await FakeKas.start({ token: 'file-token' });
  const api = await startFakeKubeApi({ tls: false, token: 'sa' });
  try {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'file-token\n');
    const kubeconfig = api.writeKubeconfig(dir);
    let shutdown: (signal: string) => void = () => {};
    let agent: Agentk | null = null;
    const logs = new LogCapture();
    const t = io();
    const exit = runAgentk(
      ['--kas-address', kas.url, '--token-file', tokenFile, '--kubeconfig', kubeconfig, '--context', 'fake', '--kas-connections', '1', '--observability-listen-address', '127.0.0.1:0', '--log-level', 'debug'],
      { POD_NAME: 'agentk-5f7d9', POD_NAMESPACE: 'gitlab-agent' },
      {
        ...t.io,
        logDestination: logs,
        onShutdownSignal: (handler) => {
          shutdown = handler;
          return () => {};
        },
        onAgent: (a) => (agent = a),
      },
    );
    const session = await kas.session();
    expect(session.peerInfo).toMatchObject({ podName: 'agentk-5f7d9', podNamespace: 'gitlab-agent', features: ['http', 'agent_config'] });
    await kas.waitFor(() => agent !== null && agent.openSessions === 1, 'agentk to count its session as open');
    shutdown('SIGTERM');
    expect(await exit).toBe(EXIT_OK);
    await kas.waitFor(() => session.state === 'closed', 'the session to close at kas after the drain');
    expect(session.closeError).toBeNull();
    const entries = logs.entries;
    expect(entries.some((e) => e.listener === 'observability' && typeof e.address === 'string')).toBe(true);
    expect(entries.some((e) => e.msg === 'shutdown requested: draining the connections to kas' && e.signal === 'SIGTERM')).toBe(true);
    expect(entries.at(-1)?.msg).toBe('agentk stopped');
    expect(logs.text).not.toContain('file-token');
  } finally {
    await kas.close();
    await api.close();
  }
}, 15_000);

/**
 * The command kas prints for a first run (src/broker/standalone/dev-setup.ts, devInstructions) has
 * no --kubeconfig: agentk must find "the cluster of your current kubeconfig" as kubectl does.
 */
describe.each([
  ['KUBECONFIG', (kubeconfig: string) => ({ KUBECONFIG: kubeconfig, HOME: join(dir, 'empty-home') })],
  ['~/.kube/config', (kubeconfig: string) => ({ HOME: homeWithKubeconfig('user-home', readFileSync(kubeconfig, 'utf8')) })],
])('the first-run command without --kubeconfig, the kubeconfig in %s', (_where, envFor) => {
  test('connects to kas and reaches the current context\'s API server with its credentials', async () => {
    const kas = await FakeKas.start({ token: 'first-run-token' });
    const api = await startFakeKubeApi({ tls: false, token: 'sa' });
    try {
      const tokenFile = join(dir, 'first-run.token');
      writeFileSync(tokenFile, 'first-run-token\n');
      // The fake's kubeconfig names another current context; a user's current one is the fake.
      const kubeconfig = api.writeKubeconfig(mkdtempSync(join(dir, 'kc-')));
      writeFileSync(kubeconfig, readFileSync(kubeconfig, 'utf8').replace('current-context: other', 'current-context: fake'));
      let shutdown: (signal: string) => void = () => {};
      const t = io();
      const exit = runAgentk(['--kas-address', kas.url, '--token-file', tokenFile, '--observability-listen-address', '127.0.0.1:0'], envFor(kubeconfig), {
        ...t.io,
        logDestination: new LogCapture(),
        onShutdownSignal: (handler) => {
          shutdown = handler;
          return () => {};
        },
      });
      await kas.session();
      // agentk asked the API server of the current context for its version, with that user's token.
      const version = api.requestsAt('/version');
      expect(version.length).toBeGreaterThan(0);
      expect(version[0]!.rawHeaders).toContain('Bearer sa');
      shutdown('SIGTERM');
      expect(await exit).toBe(EXIT_OK);
      expect(t.err).toBe('');
    } finally {
      await kas.close();
      await api.close();
    }
  }, 15_000);
});
