import { AgentConfigFileError } from './agent-config-file-error.js';
import { MAX_CONFIG_FILE_BYTES, parseAgentConfig } from './schema.js';

/** The error a file gives; fails the test with the file's parse result when it parses. */
function errorOf(file: string | Uint8Array): AgentConfigFileError {
  try {
    const parsed = parseAgentConfig(file);
    throw new Error(`expected the file to be refused, but it parsed to ${JSON.stringify(parsed)}`);
  } catch (err) {
    if (!(err instanceof AgentConfigFileError)) throw err;
    return err;
  }
}

const FULL = `
ci_access:
  projects:
    - id: group/app
      default_namespace: apps
      access_as:
        impersonate:
          username: deployer
          uid: "1000"
          groups: [deployers, "system:authenticated"]
          extra:
            - key: team
              val: [platform]
      environments: [production, "review/*"]
      protected_branches_only: true
    - id: group/other
      access_as:
        ci_job: {}
  groups:
    - id: group
      access_as:
        agent:
user_access:
  access_as:
    user: {}
  projects:
    - id: group/app
  groups:
    - id: group
gitops:
  manifest_projects:
    - id: group/manifests
      ref:
        branch: production
      default_namespace: default
      paths:
        - glob: "/manifests/**/*.yaml"
      reconcile_timeout: 3600s
      dry_run_strategy: none
      prune: true
      prune_timeout: 5m
      prune_propagation_policy: foreground
      inventory_policy: adopt_if_no_inventory
    - ref:
        commit: 0123abcd
observability:
  logging:
    level: debug
`;

describe('agent configuration file', () => {
  test('a file using every supported key parses, with durations normalised to seconds', () => {
    const { config, forAgent, unsupportedSections } = parseAgentConfig(FULL);
    expect(unsupportedSections).toEqual([]);
    expect(config.ci_access?.projects?.[0]).toEqual({
      id: 'group/app',
      default_namespace: 'apps',
      access_as: { impersonate: { username: 'deployer', uid: '1000', groups: ['deployers', 'system:authenticated'], extra: [{ key: 'team', val: ['platform'] }] } },
      environments: ['production', 'review/*'],
      protected_branches_only: true,
    });
    expect(config.ci_access?.projects?.[1]?.access_as).toEqual({ ci_job: {} });
    // "agent:" with nothing after it is the same as "agent: {}".
    expect(config.ci_access?.groups?.[0]?.access_as).toEqual({ agent: {} });
    expect(config.user_access).toEqual({ access_as: { user: {} }, projects: [{ id: 'group/app' }], groups: [{ id: 'group' }] });
    const mp = config.gitops?.manifest_projects?.[0];
    expect(mp?.reconcile_timeout).toBe('3600s');
    expect(mp?.prune_timeout).toBe('300s');
    expect(mp?.inventory_policy).toBe('adopt_if_no_inventory');
    expect(config.gitops?.manifest_projects?.[1]?.ref).toEqual({ commit: '0123abcd' });
    expect(config.observability?.logging?.level).toBe('debug');
    expect(forAgent.observability?.logging?.level).toBe('debug');
  });

  test.each([
    ['a missing file', null],
    ['an empty file', ''],
    ['a file of comments only', '# nothing configured yet\n'],
    ['an explicit null document', '~\n'],
  ])('%s is the empty configuration', (_what, file) => {
    expect(parseAgentConfig(file)).toEqual({ config: {}, forAgent: {}, unsupportedSections: [] });
  });

  test('an unknown key is an error that names its full path', () => {
    const err = errorOf('gitops:\n  manifest_projects:\n    - id: a/b\n      pathz:\n        - glob: "*.yaml"\n');
    expect(err.code).toBe('AGENT_CONFIG_INVALID');
    expect(err.issues).toEqual(['gitops.manifest_projects.0.pathz: unknown key']);
  });

  test('unknown keys at the top level and deep inside are all listed', () => {
    const err = errorOf('obsrvability: {}\nci_access:\n  projects:\n    - id: a/b\n      access_as:\n        impersonate:\n          username: x\n          group: [a]\n');
    expect(err.issues).toEqual(expect.arrayContaining(['obsrvability: unknown key', 'ci_access.projects.0.access_as.impersonate.group: unknown key']));
  });

  test('sections of features this project does not implement are accepted and reported', () => {
    const { config, forAgent, unsupportedSections } = parseAgentConfig('flux:\n  webhook_receiver: x\nobservability:\n  logging:\n    level: warn\ncontainer_scanning:\n  cadence: "0 0 * * *"\nremote_development:\n  enabled: true\nresource_management:\n  enabled: true\n');
    expect(unsupportedSections).toEqual(['flux', 'container_scanning', 'remote_development', 'resource_management']);
    // GitLab is told everything (it acts on remote_development itself); agentk only what it can use.
    expect(config.flux).toEqual({ webhook_receiver: 'x' });
    expect(Object.keys(forAgent)).toEqual(['observability']);
  });

  test.each([
    ['a phrase', '"5 minutes"', 'expected a duration such as "300s", "5m" or "1h", got "5 minutes"'],
    ['a bare number', '300', 'expected a duration string such as "300s"'],
    ['a negative duration', '"-5s"', 'got "-5s"'],
  ])('a duration written as %s is refused, naming the key', (_what, value, message) => {
    const err = errorOf(`gitops:\n  manifest_projects:\n    - id: a/b\n      reconcile_timeout: ${value}\n`);
    expect(err.issues).toHaveLength(1);
    expect(err.issues[0]).toContain('gitops.manifest_projects.0.reconcile_timeout: ');
    expect(err.issues[0]).toContain(message);
  });

  test(`a file over ${MAX_CONFIG_FILE_BYTES} bytes is a configuration error, even when its YAML is fine`, () => {
    const big = `# ${'x'.repeat(MAX_CONFIG_FILE_BYTES)}\nobservability: {}\n`;
    const err = errorOf(big);
    expect(err.message).toContain(`the limit is ${MAX_CONFIG_FILE_BYTES} bytes (128 KiB)`);
    // Exactly at the limit is fine.
    const exact = `# ${'x'.repeat(MAX_CONFIG_FILE_BYTES - 3)}\n`;
    expect(Buffer.byteLength(exact)).toBe(MAX_CONFIG_FILE_BYTES);
    expect(parseAgentConfig(exact).config).toEqual({});
  });

  test.each([
    ['broken flow syntax', 'observability: {logging: [\n'],
    ['a duplicate key', 'observability: {}\nobservability: {}\n'],
    ['two documents', 'observability: {}\n---\nflux: {}\n'],
    ['bad indentation', 'observability:\n  logging:\n level: debug\n'],
  ])('invalid YAML (%s) is a configuration error that says so', (_what, file) => {
    const err = errorOf(file);
    expect(err.issues[0]).toMatch(/^invalid YAML: /);
    expect(err.message).not.toContain('\n');
  });

  test('an alias bomb is refused instead of expanded', () => {
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 12; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
    lines.push('flux: *l');
    const err = errorOf(lines.join('\n'));
    expect(err.issues[0]).toMatch(/^invalid YAML: .*alias/i);
  });

  test('a top level that is not a map is refused', () => {
    expect(errorOf('- observability\n').issues).toEqual(['(top level): expected a map of sections such as ci_access, gitops, observability']);
  });

  test.each([
    ['observability:\n  logging:\n    level: verbose\n', 'observability.logging.level: '],
    ['ci_access:\n  projects:\n    - id: a/b\n      access_as: {agent: {}, ci_job: {}}\n', 'ci_access.projects.0.access_as: expected only one of agent, impersonate, ci_job, got agent and ci_job'],
    ['ci_access:\n  projects:\n    - id: a/b\n      access_as: {}\n', 'ci_access.projects.0.access_as: expected one of agent, impersonate, ci_job'],
    ['ci_access:\n  projects:\n    - default_namespace: x\n', 'ci_access.projects.0.id: expected the full path of a project or group'],
    ['ci_access:\n  projects:\n    - id: a/b\n      default_namespace: Not_A_Namespace\n', 'ci_access.projects.0.default_namespace: expected a Kubernetes namespace name'],
    ['gitops:\n  manifest_projects:\n    - ref: {branch: main, tag: v1}\n', 'gitops.manifest_projects.0.ref: expected only one of branch, tag, commit'],
    ['gitops:\n  manifest_projects:\n    - inventory_policy: adopt_some\n', 'gitops.manifest_projects.0.inventory_policy: '],
    ['user_access:\n  access_as:\n    ci_job: {}\n', 'user_access.access_as.ci_job: unknown key'],
    ['ci_access:\n  projects:\n    - id: a/b\n      access_as:\n        agent: {x: 1}\n', 'ci_access.projects.0.access_as.agent.x: unknown key'],
  ])('a wrong value is refused with its path: %j', (file, prefix) => {
    const err = errorOf(file);
    expect(err.issues.some((i) => i.startsWith(prefix))).toBe(true);
  });

  test('lists have a bound', () => {
    const projects = Array.from({ length: 101 }, (_, i) => `    - id: g/p${i}`).join('\n');
    expect(errorOf(`ci_access:\n  projects:\n${projects}\n`).issues).toEqual(['ci_access.projects: expected at most 100 entries']);
  });

  test('YAML 1.1 tags do not smuggle binary values through unsupported sections', () => {
    const { config } = parseAgentConfig('flux:\n  blob: !!binary aGVsbG8=\n');
    expect(config.flux).toEqual({ blob: 'aGVsbG8=' });
  });

  test('the file may be given as bytes; bytes that are not UTF-8 are refused', () => {
    expect(parseAgentConfig(Buffer.from('observability: {logging: {level: error}}\n')).config.observability?.logging?.level).toBe('error');
    expect(errorOf(Buffer.from([0x6f, 0x3a, 0x20, 0xff, 0xfe, 0x0a])).issues).toEqual(['the file is not UTF-8 text']);
  });

  test('observability.events is accepted and sent to agentk as written', () => {
    const parsed = parseAgentConfig('observability:\n  events:\n    types: [Warning, Normal]\n    namespaces: [web]\n    label_selector: "app=web,tier in (a,b)"\n    rate_limit: 2.5\n    burst: 20\n');
    expect(parsed.forAgent).toEqual({ observability: { events: { types: ['Warning', 'Normal'], namespaces: ['web'], label_selector: 'app=web,tier in (a,b)', rate_limit: 2.5, burst: 20 } } });
  });

  test.each([
    ['an unknown type', 'types: [Error]', 'observability.events.types.0: expected one of Normal, Warning'],
    ['a type twice', 'types: [Warning, Warning]', 'observability.events.types: expected each type once'],
    ['a namespace that is not a name', 'namespaces: [Web_1]', 'observability.events.namespaces.0: expected a Kubernetes namespace name'],
    ['a broken label selector', 'label_selector: "app in (a"', 'observability.events.label_selector: expected a label selector'],
    ['a rate of 0', 'rate_limit: 0', 'observability.events.rate_limit: expected more than 0 events per second'],
    ['a fractional burst', 'burst: 1.5', 'observability.events.burst: expected a whole number of events'],
    ['an unknown key', 'since: 5m', 'observability.events.since: unknown key'],
  ])('observability.events with %s is refused, naming the key', (_what, line, message) => {
    const err = errorOf(`observability:\n  events:\n    ${line}\n`);
    expect(err.issues).toHaveLength(1);
    expect(err.issues[0]).toContain(message);
  });
});
