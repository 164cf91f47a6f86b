import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../shared/logger.js';
import { AgentConfigError } from '../config-error.js';
import { ApiServerCredentials, loadApiServerConfig } from './api-server.js';

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
