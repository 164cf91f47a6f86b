import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestGitRepo as TestRepo } from '../../../test/support/git-repo.js';
import { DirectoryManifests } from './directory-manifests.js';
import { GitManifests, basicAuthHeader, isSshUrl } from './git-manifests.js';
import { ManifestProblemError, type ManifestProjectSpec } from './manifest-source.js';

const spec = (ref?: ManifestProjectSpec['ref'], globs = ['**/*.{yaml,yml,json}']): ManifestProjectSpec => ({ id: 'p', ref, globs });

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'gitops-git-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('git source (a real repository)', () => {
  test('reads the default branch, then only a new commit', async () => {
    const repo = new TestRepo(join(root, 'repo'));
    const c1 = repo.commit({ 'manifests/cm.yaml': 'kind: ConfigMap\n', 'README.md': 'hi', '.hidden/x.yaml': 'no', 'app/deploy.json': '{}' });
    const source = new GitManifests({ url: repo.dir }, join(root, 'cache'));
    const first = await source.read(spec(), undefined);
    expect(first.snapshot?.commit).toBe(c1);
    expect(first.snapshot?.files.map((f) => [f.path, Buffer.from(f.data).toString()])).toEqual([
      ['app/deploy.json', '{}'],
      ['manifests/cm.yaml', 'kind: ConfigMap\n'],
    ]);
    expect(first.snapshot?.complete).toBe(true);
    expect((await source.read(spec(), c1)).snapshot).toBeNull();
    const c2 = repo.commit({ 'manifests/cm.yaml': 'kind: ConfigMap\nmetadata: {name: x}\n', 'app/deploy.json': null });
    const second = await source.read(spec(), c1);
    expect(second.snapshot?.commit).toBe(c2);
    expect(second.snapshot?.files.map((f) => f.path)).toEqual(['manifests/cm.yaml']);
  });

  test('branches, tags (annotated too) and commits; a missing ref is a problem of the project', async () => {
    const repo = new TestRepo(join(root, 'repo'));
    const c1 = repo.commit({ 'a.yaml': 'one' });
    repo.git('tag', '-a', 'v1', '-m', 'v1');
    repo.git('branch', 'stable');
    const c2 = repo.commit({ 'a.yaml': 'two' });
    const source = new GitManifests({ url: `file://${repo.dir}` }, join(root, 'cache'));
    expect((await source.read(spec({ branch: 'stable' }), undefined)).snapshot?.commit).toBe(c1);
    expect((await source.read(spec({ tag: 'v1' }), undefined)).snapshot?.commit).toBe(c1);
    expect((await source.read(spec({ commit: c1 }), undefined)).snapshot?.files.map((f) => Buffer.from(f.data).toString())).toEqual(['one']);
    expect((await source.read(spec({ commit: c2.slice(0, 10) }), undefined)).snapshot?.commit).toBe(c2);
    expect((await source.read(spec({ branch: 'main' }), undefined)).snapshot?.commit).toBe(c2);
    for (const ref of [{ branch: 'nope' }, { tag: 'v9' }, { commit: 'deadbeef00' }, { branch: 'bad..name' }]) {
      const err = await source.read(spec(ref), undefined).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ManifestProblemError);
      expect((err as ManifestProblemError).code).toBe('MANIFEST_REF_NOT_FOUND');
    }
  });

  test('limits apply to a git source; an unreachable repository is a failure, not a problem of the project', async () => {
    const repo = new TestRepo(join(root, 'repo'));
    repo.commit({ 'a.yaml': 'x'.repeat(20), 'b.yaml': 'y', 'link.yaml': 'z' });
    repo.git('rm', '-q', 'link.yaml');
    symlinkSync('b.yaml', join(repo.dir, 'link.yaml'));
    repo.git('add', 'link.yaml');
    repo.git('commit', '-q', '-m', 'link');
    const source = new GitManifests({ url: repo.dir }, join(root, 'cache'), { fileBytes: 10 });
    const s = (await source.read(spec(), undefined)).snapshot!;
    expect(s.files.map((f) => f.path)).toEqual(['b.yaml']);
    expect(s.errors.map((e) => [e.code, e.path])).toEqual([
      ['MANIFEST_INVALID_PATH', 'link.yaml'],
      ['MANIFEST_FILE_TOO_LARGE', 'a.yaml'],
    ]);
    expect(s.complete).toBe(false);
    const missing = new GitManifests({ url: join(root, 'does-not-exist') }, join(root, 'cache'));
    const err = await missing.read(spec(), undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(ManifestProblemError);
  });

  test('an empty repository has no default branch', async () => {
    const repo = new TestRepo(join(root, 'repo'));
    const err = await new GitManifests({ url: repo.dir }, join(root, 'cache')).read(spec(), undefined).catch((e: unknown) => e);
    expect((err as ManifestProblemError).code).toBe('MANIFEST_REF_NOT_FOUND');
  });

  test('credentials helpers', () => {
    expect(isSshUrl('git@gitlab.example.com:group/project.git')).toBe(true);
    expect(isSshUrl('ssh://git@host/x.git')).toBe(true);
    expect(isSshUrl('https://gitlab.example.com/group/project.git')).toBe(false);
    expect(isSshUrl('/srv/repo')).toBe(false);
    expect(basicAuthHeader('user:secret\n')).toBe(`Authorization: Basic ${Buffer.from('user:secret').toString('base64')}`);
    expect(basicAuthHeader('token')).toBe(`Authorization: Basic ${Buffer.from('oauth2:token').toString('base64')}`);
  });
});

describe('directory source', () => {
  test('the commit is a digest of the file set; unchanged folders are not read again', async () => {
    const dir = join(root, 'dir');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    mkdirSync(join(dir, '.git'));
    writeFileSync(join(dir, 'a.yaml'), 'a');
    writeFileSync(join(dir, 'sub', 'b.json'), '{}');
    writeFileSync(join(dir, '.git', 'c.yaml'), 'hidden');
    writeFileSync(join(dir, 'notes.txt'), 'no');
    const source = new DirectoryManifests(dir);
    const first = (await source.read(['**/*.{yaml,yml,json}'], undefined)).snapshot!;
    expect(first.commit).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(first.files.map((f) => f.path)).toEqual(['a.yaml', 'sub/b.json']);
    expect((await source.read(['**/*.{yaml,yml,json}'], first.commit)).snapshot).toBeNull();
    writeFileSync(join(dir, 'a.yaml'), 'changed');
    const second = (await source.read(['**/*.{yaml,yml,json}'], first.commit)).snapshot!;
    expect(second.commit).not.toBe(first.commit);
    expect(Buffer.from(second.files[0]!.data).toString()).toBe('changed');
  });

  test('a missing folder is a problem of the project', async () => {
    const err = await new DirectoryManifests(join(root, 'nope')).read(['*.yaml'], undefined).catch((e: unknown) => e);
    expect((err as ManifestProblemError).code).toBe('MANIFEST_SOURCE_FAILED');
  });
});
