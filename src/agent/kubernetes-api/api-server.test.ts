import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createLogger } from '../../shared/logger.js';
import { AgentConfigError } from '../config-error.js';
import { ApiServerClient, ApiServerCredentials, loadApiServerConfig } from './api-server.js';

const logger = createLogger({ name: 'test', level: 'silent' });
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'agentk-api-server-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function kubeconfig(users: string): string {
  const file = join(dir, 'config');
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
clusters:
- name: one
  cluster:
    server: https://10.0.0.1:6443/some/prefix/
    certificate-authority-data: ${Buffer.from('-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n').toString('base64')}
    tls-server-name: kubernetes.default
contexts:
- name: a
  context: {cluster: one, user: with-token}
- name: b
  context: {cluster: one, user: with-token-file}
- name: c
  context: {cluster: one, user: basic}
current-context: a
users:
${users}
`,
  );
  return file;
}

const USERS = `- name: with-token
  user: {token: static-token}
- name: with-token-file
  user: {token-file: token}
- name: basic
  user: {username: u, password: p}
`;

describe('loadApiServerConfig', () => {
  test('a kubeconfig: the current context by default, another with --context; the base URL keeps its path', async () => {
    const file = kubeconfig(USERS);
    writeFileSync(join(dir, 'token'), 'file-token\n');
    const a = loadApiServerConfig({ kubeconfig: file });
    expect(a.url.href).toBe('https://10.0.0.1:6443/some/prefix');
    expect(a.auth).toEqual({ kind: 'token', token: 'static-token' });
    expect(a.tls.ca?.toString()).toContain('BEGIN CERTIFICATE');
    expect(a.tls.servername).toBe('kubernetes.default');
    expect(a.tls.rejectUnauthorized).toBe(true);
    expect(a.source).toBe(`kubeconfig ${file} context a`);
    // A relative token-file is relative to the kubeconfig and is re-read later, not frozen at load.
    expect(loadApiServerConfig({ kubeconfig: file, context: 'b' }).auth).toEqual({ kind: 'token-file', path: join(dir, 'token') });
    expect(loadApiServerConfig({ kubeconfig: file, context: 'c' }).auth).toEqual({ kind: 'basic', username: 'u', password: 'p' });
  });

  test('mistakes name the flag', () => {
    const file = kubeconfig(USERS);
    expect(() => loadApiServerConfig({ kubeconfig: file, context: 'nope' })).toThrow(/^--context: no context "nope" .* \(it has a, b, c\)/);
    expect(() => loadApiServerConfig({ kubeconfig: join(dir, 'missing') })).toThrow(/^--kubeconfig: cannot load/);
    const err = (() => {
      try {
        loadApiServerConfig({ env: {} });
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(AgentConfigError);
    expect((err as AgentConfigError).message).toMatch(/^--kubeconfig: not running in a cluster/);
  });
});

/** Writes `<dir>/<sub>/config` with the given YAML and returns its path. */
function configIn(sub: string, yaml: string): string {
  mkdirSync(join(dir, sub), { recursive: true });
  const file = join(dir, sub, 'config');
  writeFileSync(file, yaml);
  return file;
}

const FIRST = `apiVersion: v1
kind: Config
clusters:
- {name: shared, cluster: {server: 'https://10.0.0.1:6443'}}
users:
- {name: first-user, user: {token-file: token}}
contexts:
- {name: one, context: {cluster: shared, user: first-user}}
current-context: one
`;
const SECOND = `apiVersion: v1
kind: Config
clusters:
- {name: shared, cluster: {server: 'https://10.9.9.9:6443'}}
- {name: second, cluster: {server: 'https://10.0.0.2:6443'}}
users:
- {name: second-user, user: {token: second-token}}
contexts:
- {name: one, context: {cluster: second, user: second-user}}
- {name: two, context: {cluster: second, user: second-user}}
current-context: two
`;
const IN_CLUSTER = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };

describe('the kubeconfig rules without --kubeconfig: KUBECONFIG, the in-cluster service account, ~/.kube/config', () => {
  test('KUBECONFIG is used: its files merged, the first definition of a name and the first current context win, missing files skipped', () => {
    const first = configIn('a', FIRST);
    const second = configIn('b', SECOND);
    const KUBECONFIG = [join(dir, 'missing'), first, second].join(delimiter);
    const a = loadApiServerConfig({ env: { KUBECONFIG, HOME: join(dir, 'no-home') } });
    expect(a.url.href).toBe('https://10.0.0.1:6443/');
    // The token file is relative to the file that names it, not to the working directory.
    expect(a.auth).toEqual({ kind: 'token-file', path: join(dir, 'a', 'token') });
    expect(a.source).toBe(`kubeconfig ${first}${delimiter}${second} (from KUBECONFIG) context one`);
    const b = loadApiServerConfig({ context: 'two', env: { KUBECONFIG } });
    expect(b.url.href).toBe('https://10.0.0.2:6443/');
    expect(b.auth).toEqual({ kind: 'token', token: 'second-token' });
  });

  test('--kubeconfig wins over KUBECONFIG, and KUBECONFIG over the in-cluster service account', () => {
    const first = configIn('a', FIRST);
    const second = configIn('b', SECOND);
    expect(loadApiServerConfig({ kubeconfig: second, env: { KUBECONFIG: first } }).url.host).toBe('10.0.0.2:6443');
    expect(loadApiServerConfig({ env: { ...IN_CLUSTER, KUBECONFIG: first } }).url.host).toBe('10.0.0.1:6443');
  });

  test('outside a cluster ~/.kube/config of HOME is used, with --context too; in a cluster the service account wins over it', () => {
    const home = join(dir, 'home');
    configIn(join('home', '.kube'), SECOND);
    const config = join(home, '.kube', 'config');
    const h = loadApiServerConfig({ env: { HOME: home } });
    expect(h.url.host).toBe('10.0.0.2:6443');
    expect(h.source).toBe(`kubeconfig ${config} (from ~/.kube/config) context two`);
    expect(loadApiServerConfig({ context: 'one', env: { HOME: home } }).source).toBe(`kubeconfig ${config} (from ~/.kube/config) context one`);
    // In a cluster, the service account's files are what is read: missing on a test machine, unless it runs in a pod.
    let inCluster: string;
    try {
      const c = loadApiServerConfig({ env: { ...IN_CLUSTER, HOME: home } });
      inCluster = `${c.source} ${c.url.host}`;
    } catch (err) {
      inCluster = (err as Error).message;
    }
    expect(inCluster).toMatch(/^(in-cluster 10\.96\.0\.1:443$|in-cluster service account: cannot read the CA certificate \/var\/run\/secrets\/kubernetes.io\/serviceaccount\/ca.crt)/);
  });

  test('--context with the in-cluster service account is refused, naming --context', () => {
    expect(() => loadApiServerConfig({ context: 'dev', env: IN_CLUSTER })).toThrow(/^--context: needs --kubeconfig, KUBECONFIG or ~\/.kube\/config/);
  });

  test('mistakes name the source that failed', () => {
    const broken = configIn('broken', 'clusters: [unclosed\n');
    expect(() => loadApiServerConfig({ env: { KUBECONFIG: [join(dir, 'x'), join(dir, 'y')].join(delimiter) } })).toThrow(/^KUBECONFIG: none of its files exists \(.*x, .*y\)/);
    expect(() => loadApiServerConfig({ env: { KUBECONFIG: [configIn('a', FIRST), broken].join(delimiter) } })).toThrow(new RegExp(`^KUBECONFIG: cannot load ${broken}: `));
    expect(() => loadApiServerConfig({ context: 'nope', env: { KUBECONFIG: configIn('a', FIRST) } })).toThrow(/^--context: no context "nope" in .* \(from KUBECONFIG\) \(it has one\)/);
    const home = join(dir, 'home');
    configIn(join('home', '.kube'), 'clusters: [unclosed\n');
    expect(() => loadApiServerConfig({ env: { HOME: home } })).toThrow(new RegExp(`^~/.kube/config: cannot load ${join(home, '.kube', 'config')}: `));
    expect(() => loadApiServerConfig({ env: { HOME: join(dir, 'empty-home') } })).toThrow(/^--kubeconfig: not running in a cluster .*KUBECONFIG is not set and there is no .*empty-home\/.kube\/config/);
  });
});

describe('ApiServerCredentials with a token file (the projected service account token)', () => {
  test('reads the file at most every refreshMs, picks up a rotated token, keeps the last one if a read fails', async () => {
    const path = join(dir, 'token');
    writeFileSync(path, 'first\n');
    let now = 1_000_000;
    const creds = new ApiServerCredentials({ kind: 'token-file', path }, { refreshMs: 60_000, logger, now: () => now });
    expect(await creds.authorization()).toBe('Bearer first');
    writeFileSync(path, 'second\n');
    now += 59_000;
    expect(await creds.authorization()).toBe('Bearer first');
    now += 1_000;
    expect(await creds.authorization()).toBe('Bearer second');
    rmSync(path);
    now += 60_000;
    expect(await creds.authorization()).toBe('Bearer second');
  });

  test('concurrent callers share one read', async () => {
    const path = join(dir, 'token');
    writeFileSync(path, 'shared');
    const creds = new ApiServerCredentials({ kind: 'token-file', path }, { logger });
    const all = await Promise.all([creds.authorization(), creds.authorization(), creds.authorization()]);
    expect(all).toEqual(['Bearer shared', 'Bearer shared', 'Bearer shared']);
  });
});

describe('credentials at hand without waiting (the request path takes them first)', () => {
  test('fixed credentials and none are always at hand, as authorization() gives them', async () => {
    const cases = [
      new ApiServerCredentials({ kind: 'none' }, { logger }),
      new ApiServerCredentials({ kind: 'token', token: 't0k' }, { logger }),
      new ApiServerCredentials({ kind: 'basic', username: 'u', password: 'p:w' }, { logger }),
    ];
    expect(cases.map((c) => c.current())).toEqual([null, 'Bearer t0k', `Basic ${Buffer.from('u:p:w').toString('base64')}`]);
    for (const c of cases) expect(await c.authorization()).toBe(c.current());
  });

  test('a token file is at hand only between reads: never read, or older than refreshMs, means wait for authorization()', async () => {
    const path = join(dir, 'token');
    writeFileSync(path, 'first\n');
    let now = 1_000_000;
    const creds = new ApiServerCredentials({ kind: 'token-file', path }, { refreshMs: 60_000, logger, now: () => now });
    expect(creds.current()).toBeUndefined();
    expect(await creds.authorization()).toBe('Bearer first');
    expect(creds.current()).toBe('Bearer first');
    writeFileSync(path, 'second\n');
    now += 60_000;
    expect(creds.current()).toBeUndefined();
    expect(await creds.authorization()).toBe('Bearer second');
    expect(creds.current()).toBe('Bearer second');
  });

  test('the client prepares a request at once when it can, else after the read, with the same result', async () => {
    const path = join(dir, 'token');
    writeFileSync(path, 'from-file');
    const client = new ApiServerClient(
      { url: new URL('http://127.0.0.1:1/base/'), tls: { rejectUnauthorized: true }, auth: { kind: 'token-file', path }, source: 'test' },
      { logger, tokenRefreshMs: 60_000 },
    );
    try {
      expect(client.prepareNow('/api', ['Accept', 'application/json'])).toBeNull();
      const waited = await client.prepare('/api', ['Accept', 'application/json']);
      expect(waited).toEqual({ path: '/base/api', headers: ['Host', '127.0.0.1:1', 'Accept', 'application/json', 'Authorization', 'Bearer from-file'] });
      expect(client.prepareNow('/api', ['Accept', 'application/json'])).toEqual(waited);
      // A path that is not origin-form is refused either way, before any credential is looked at.
      expect(() => client.prepareNow('//evil/api', [])).toThrow('not origin-form');
      await expect(client.prepare('//evil/api', [])).rejects.toThrow('not origin-form');
    } finally {
      client.close();
    }
  });
});
