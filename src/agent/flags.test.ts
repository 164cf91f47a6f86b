import { AgentConfigError } from './config-error.js';
import { helpText, parseFlags, readToken, type AgentFlags } from './flags.js';

function run(...argv: string[]): AgentFlags {
  const c = parseFlags(argv);
  if (c.command !== 'run') throw new Error('expected a run command');
  return c.flags;
}

/** The error parseFlags throws, so a test can say which flag it must name. */
function flagError(...argv: string[]): AgentConfigError {
  try {
    parseFlags(argv);
  } catch (err) {
    if (err instanceof AgentConfigError) return err;
    throw err;
  }
  throw new Error(`parseFlags accepted ${JSON.stringify(argv)}, which it should refuse`);
}

describe('parseFlags', () => {
  test('only --kas-address: every other flag takes its documented default', () => {
    const f = run('--kas-address', 'wss://kas.example.com/');
    expect(f.kasAddress.href).toBe('wss://kas.example.com/');
    expect(f).toMatchObject({ tokenFile: undefined, kasCaCertFile: undefined, kasHeaders: [], kasConnections: 2, kubeconfig: undefined, context: undefined, logLevel: 'info', workloadHealthDebounceMs: 2000 });
    expect(f.observabilityListenAddress).toEqual({ host: undefined, port: 8080 });
  });

  test('every flag, in both --flag value and --flag=value forms, repeatable --kas-header in order', () => {
    const f = run(
      '--kas-address=ws://127.0.0.1:8150/agent',
      '--token-file', '/etc/agentk/token',
      '--kas-ca-cert-file', '/etc/agentk/ca.pem',
      '--kas-header', 'X-Tenant: blue',
      '--kas-header=X-Trace: a, b',
      '--kas-connections', '5',
      '--observability-listen-address', '[::1]:0',
      '--kubeconfig', '/home/me/.kube/config',
      '--context', 'kind-dev',
      '--log-level', 'debug',
      '--workload-health-debounce', '500ms',
    );
    expect(f.kasAddress.href).toBe('ws://127.0.0.1:8150/agent');
    expect(f).toMatchObject({
      tokenFile: '/etc/agentk/token',
      kasCaCertFile: '/etc/agentk/ca.pem',
      kasHeaders: [['X-Tenant', 'blue'], ['X-Trace', 'a, b']],
      kasConnections: 5,
      kubeconfig: '/home/me/.kube/config',
      context: 'kind-dev',
      logLevel: 'debug',
      workloadHealthDebounceMs: 500,
    });
    expect(f.observabilityListenAddress).toEqual({ host: '::1', port: 0 });
  });

  test('--context without --kubeconfig is taken: KUBECONFIG or ~/.kube/config may hold it (in a cluster loadApiServerConfig refuses it)', () => {
    expect(run('--kas-address', 'wss://k/', '--context', 'dev')).toMatchObject({ kubeconfig: undefined, context: 'dev' });
  });

  test('Flux: --gitlab-external-url is repeatable (none by default), --flux-notification-controller-url defaults to Flux\'s webhook-receiver Service', () => {
    const none = run('--kas-address', 'wss://k/');
    expect(none.gitlabExternalUrls).toEqual([]);
    expect(none.fluxNotificationControllerUrl.href).toBe('http://webhook-receiver.flux-system.svc.cluster.local/');
    const f = run('--kas-address', 'wss://k/', '--gitlab-external-url', 'https://gitlab.example.com', '--gitlab-external-url=https://example.org/gitlab', '--flux-notification-controller-url', 'http://nc.flux:9292');
    expect(f.gitlabExternalUrls.map((u) => u.href)).toEqual(['https://gitlab.example.com/', 'https://example.org/gitlab']);
    expect(f.fluxNotificationControllerUrl.href).toBe('http://nc.flux:9292/');
    expect(flagError('--kas-address', 'wss://k/', '--gitlab-external-url', 'gitlab.example.com').key).toBe('--gitlab-external-url');
    expect(flagError('--kas-address', 'wss://k/', '--flux-notification-controller-url', 'ftp://x').key).toBe('--flux-notification-controller-url');
  });

  test('--help wins over everything else, even missing required flags', () => {
    expect(parseFlags(['--help'])).toEqual({ command: 'help' });
    expect(parseFlags(['--kas-connections', '3', '--help'])).toEqual({ command: 'help' });
  });

  test.each([
    [['--token-file', 'x'], '--kas-address', 'is required'],
    [['--kas-address', 'https://kas.example.com/'], '--kas-address', 'ws:// or wss://'],
    [['--kas-address', 'not a url'], '--kas-address', 'ws:// or wss://'],
    [['--kas-address', 'wss://user:pw@kas/'], '--kas-address', 'credentials'],
    [['--kas-address'], '--kas-address', 'expected a value'],
    [['--kas-address', '--token-file', 'x'], '--kas-address', 'got the flag --token-file'],
    [['--kas-address', 'wss://k/', '--kas-connections', '0'], '--kas-connections', 'whole number from 1 to 64'],
    [['--kas-address', 'wss://k/', '--kas-connections', 'two'], '--kas-connections', 'whole number'],
    [['--kas-address', 'wss://k/', '--kas-connections', '65'], '--kas-connections', 'whole number'],
    [['--kas-address', 'wss://k/', '--kas-connections', '1.5'], '--kas-connections', 'whole number'],
    [['--kas-address', 'wss://k/', '--kas-header', 'no colon'], '--kas-header', '"Name: value"'],
    [['--kas-address', 'wss://k/', '--kas-header', 'Bad Name: x'], '--kas-header', '"Name: value"'],
    [['--kas-address', 'wss://k/', '--kas-header', 'Authorization: Bearer x'], '--kas-header', 'Authorization'],
    [['--kas-address', 'wss://k/', '--observability-listen-address', '8080'], '--observability-listen-address', 'host:port'],
    [['--kas-address', 'wss://k/', '--observability-listen-address', ':70000'], '--observability-listen-address', 'host:port'],
    [['--kas-address', 'wss://k/', '--log-level', 'loud'], '--log-level', 'one of'],
    [['--kas-address', 'wss://k/', '--workload-health-debounce', '2'], '--workload-health-debounce', 'duration from 100ms to 5m'],
    [['--kas-address', 'wss://k/', '--workload-health-debounce', '10m'], '--workload-health-debounce', 'duration from 100ms to 5m'],
    [['--kas-address', 'wss://k/', '--token-file', ''], '--token-file', 'must not be empty'],
    [['--kas-address', 'wss://k/', '--kas-address', 'wss://j/'], '--kas-address', 'more than once'],
    [['--kas-address', 'wss://k/', '--kas-adress', 'x'], '--kas-adress', 'unknown flag'],
    [['--kas-address', 'wss://k/', '-v'], '-v', 'unknown flag'],
    [['--kas-address', 'wss://k/', 'extra'], 'extra', 'only flags'],
    [['--kas-address', 'wss://k/', '--help=yes'], '--help', 'takes no value'],
  ])('%j is refused, naming %s', (argv, flag, expected) => {
    const err = flagError(...argv);
    expect(err.key).toBe(flag);
    expect(err.message.startsWith(`${flag}: `)).toBe(true);
    expect(err.message).toContain(expected);
  });
});

describe('readToken', () => {
  const files: Record<string, string> = { '/t/ok': 'glagent-abc\n', '/t/crlf': 'glagent-abc\r\n', '/t/empty': '\n' };
  const read = (p: string) => {
    if (p in files) return files[p]!;
    throw Object.assign(new Error(`ENOENT: no such file or directory, open '${p}'`), { code: 'ENOENT' });
  };

  test('the token file wins over AGENTK_TOKEN and loses its trailing newline', () => {
    expect(readToken({ tokenFile: '/t/ok' }, { AGENTK_TOKEN: 'from-env' }, read)).toBe('glagent-abc');
    expect(readToken({ tokenFile: '/t/crlf' }, {}, read)).toBe('glagent-abc');
  });

  test('without --token-file the token comes from AGENTK_TOKEN', () => {
    expect(readToken({ tokenFile: undefined }, { AGENTK_TOKEN: 'from-env' }, read)).toBe('from-env');
  });

  test('an empty token file, a missing file and no token at all are refused, naming --token-file', () => {
    expect(() => readToken({ tokenFile: '/t/empty' }, {}, read)).toThrow(/^--token-file: \/t\/empty is empty/);
    expect(() => readToken({ tokenFile: '/t/missing' }, {}, read)).toThrow(/^--token-file: cannot read \/t\/missing/);
    expect(() => readToken({ tokenFile: undefined }, {}, read)).toThrow(/^--token-file: is required when the AGENTK_TOKEN/);
    expect(() => readToken({ tokenFile: undefined }, { AGENTK_TOKEN: '  ' }, read)).toThrow(AgentConfigError);
  });
});

describe('helpText', () => {
  test('lists every flag, the environment variables and the exit codes', () => {
    const text = helpText();
    for (const flag of ['--kas-address', '--token-file', '--kas-ca-cert-file', '--kas-header', '--kas-connections', '--observability-listen-address', '--kubeconfig', '--context', '--log-level', '--workload-health-debounce', '--help']) {
      expect(text).toContain(flag);
    }
    for (const word of ['AGENTK_TOKEN', 'KUBECONFIG', 'KUBERNETES_SERVICE_HOST', '.kube/config', 'POD_NAME', 'POD_NAMESPACE', 'Exit codes']) expect(text).toContain(word);
  });
});
