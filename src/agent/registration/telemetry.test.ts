import { goArchitecture, telemetryFromEnv } from './telemetry.js';

describe('goArchitecture', () => {
  test.each([
    ['x64', 'amd64'],
    ['arm64', 'arm64'],
    ['ia32', '386'],
    ['arm', 'arm'],
    ['ppc64', 'ppc64le'],
    ['s390x', 's390x'],
    ['riscv64', 'riscv64'],
    ['mipsel', 'mipsle'],
  ])('%s is %s', (node, go) => {
    expect(goArchitecture(node)).toBe(go);
  });

  test('an architecture Go has no name for keeps Node\'s, made safe', () => {
    expect(goArchitecture('Weird-Arch')).toBe('weird_arch');
  });

  test('this machine\'s', () => {
    expect(goArchitecture()).toMatch(/^[a-z0-9_]+$/);
  });
});

describe('telemetryFromEnv', () => {
  test('GITLAB_AGENT_TELEMETRY_* become lowercased keys; other variables are ignored', () => {
    const { telemetry, skipped } = telemetryFromEnv({ GITLAB_AGENT_TELEMETRY_INSTALLATION_METHOD: 'helm', GITLAB_AGENT_TELEMETRY_HELM_CHART_VERSION: '0.1.0', HOME: '/root', GITLAB_AGENT_TOKEN: 'secret' });
    expect(telemetry).toEqual({ installation_method: 'helm', helm_chart_version: '0.1.0' });
    expect(skipped).toEqual([]);
  });

  test('bounded: at most 20 entries, keys up to 64 characters, values up to 256; the rest is skipped with a reason', () => {
    const env: NodeJS.ProcessEnv = {};
    for (let i = 0; i < 25; i++) env[`GITLAB_AGENT_TELEMETRY_K${String(i).padStart(2, '0')}`] = 'v';
    env[`GITLAB_AGENT_TELEMETRY_${'L'.repeat(65)}`] = 'v';
    env.GITLAB_AGENT_TELEMETRY_A_LONG_VALUE = 'x'.repeat(257);
    env['GITLAB_AGENT_TELEMETRY_BAD-NAME'] = 'v';
    env.GITLAB_AGENT_TELEMETRY_ = 'v';
    env.GITLAB_AGENT_TELEMETRY_NEWLINE = 'a\nb';
    const { telemetry, skipped } = telemetryFromEnv(env);
    expect(Object.keys(telemetry)).toHaveLength(20);
    expect(Object.keys(telemetry).every((k) => /^k\d\d$/.test(k))).toBe(true);
    expect(skipped.map((s) => s.name).sort()).toEqual(
      ['GITLAB_AGENT_TELEMETRY_', 'GITLAB_AGENT_TELEMETRY_A_LONG_VALUE', 'GITLAB_AGENT_TELEMETRY_BAD-NAME', 'GITLAB_AGENT_TELEMETRY_NEWLINE', `GITLAB_AGENT_TELEMETRY_${'L'.repeat(65)}`, 'GITLAB_AGENT_TELEMETRY_K20', 'GITLAB_AGENT_TELEMETRY_K21', 'GITLAB_AGENT_TELEMETRY_K22', 'GITLAB_AGENT_TELEMETRY_K23', 'GITLAB_AGENT_TELEMETRY_K24'].sort(),
    );
  });
});
