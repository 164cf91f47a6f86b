import { collectFiles, compileGlobs, DEFAULT_MANIFEST_GLOB, ManifestFileError, selectEntries, type ListedEntry } from './manifest-source.js';

const entry = (path: string, size: number | null = null, regular = true): ListedEntry => ({ path, size, regular });

function matched(globs: string[], paths: string[]): string[] {
  return selectEntries(paths.map((p) => entry(p)), compileGlobs(globs)).selected.map((e) => e.path);
}

describe('globs', () => {
  test('the default glob takes YAML and JSON files anywhere, except in hidden folders', () => {
    const paths = ['a.yaml', 'b.yml', 'c.json', 'd.txt', 'dir/e.yaml', 'dir/sub/f.json', '.hidden/g.yaml', 'dir/.git/h.yaml', '.i.yaml', 'README.md'];
    expect(matched([DEFAULT_MANIFEST_GLOB], paths)).toEqual(['a.yaml', 'b.yml', 'c.json', 'dir/e.yaml', 'dir/sub/f.json']);
  });

  test('a leading slash is the project root; folders narrow the listing', () => {
    const globs = compileGlobs(['/manifests/**/*.yaml', 'manifests/prod/*.json', 'other/x.yaml']);
    expect(globs.problems).toEqual([]);
    expect(globs.prefixes).toEqual(['manifests', 'other']);
    expect(matched(['/manifests/**/*.yaml'], ['manifests/a.yaml', 'manifests/x/b.yaml', 'other/c.yaml'])).toEqual(['manifests/a.yaml', 'manifests/x/b.yaml']);
    expect(compileGlobs(['**/*.yaml', 'a/*.yaml']).prefixes).toEqual(['']);
  });

  test('globs that leave the project are refused; more than 100 paths read nothing', () => {
    expect(compileGlobs(['../x/*.yaml', '', 'a/./b']).problems.map((p) => p.code)).toEqual(['MANIFEST_INVALID_GLOB', 'MANIFEST_INVALID_GLOB', 'MANIFEST_INVALID_GLOB']);
    const many = compileGlobs(Array.from({ length: 101 }, (_, i) => `d${i}/*.yaml`));
    expect(many.matchers).toEqual([]);
    expect(many.problems.map((p) => p.code)).toEqual(['MANIFEST_TOO_MANY_PATHS']);
    expect(compileGlobs(Array.from({ length: 100 }, (_, i) => `d${i}/*.yaml`)).problems).toEqual([]);
  });
});

describe('selection and limits', () => {
  const read = (e: ListedEntry) => Promise.resolve(Buffer.alloc(e.size ?? 1, 'x'));

  test('a file matched by two globs is a duplicate: read once, snapshot incomplete', async () => {
    const s = await collectFiles('c', [entry('a/x.yaml', 3), entry('b.yaml', 2)], compileGlobs(['a/*.yaml', '**/*.yaml']), { read });
    expect(s.files.map((f) => f.path)).toEqual(['a/x.yaml', 'b.yaml']);
    expect(s.errors).toEqual([{ code: 'MANIFEST_DUPLICATE_FILE', message: expect.stringContaining('2 globs'), path: 'a/x.yaml' }]);
    expect(s.complete).toBe(false);
  });

  test('a listing that names a path twice sends it once', async () => {
    const s = await collectFiles('c', [entry('a.yaml', 1), entry('a.yaml', 1)], compileGlobs(['*.yaml']), { read });
    expect(s.files).toHaveLength(1);
    expect(s.complete).toBe(true);
  });

  test('more files than the limit: the first in path order are kept', async () => {
    const entries = ['e.yaml', 'a.yaml', 'd.yaml', 'b.yaml', 'c.yaml'].map((p) => entry(p, 1));
    const s = await collectFiles('c', entries, compileGlobs(['*.yaml']), { read, limits: { files: 3 } });
    expect(s.files.map((f) => f.path)).toEqual(['a.yaml', 'b.yaml', 'c.yaml']);
    expect(s.errors.map((e) => e.code)).toEqual(['MANIFEST_TOO_MANY_FILES']);
    expect(s.complete).toBe(false);
  });

  test('a file over the per-file limit is left out (known size: never read; unknown: the reader says)', async () => {
    const reads: string[] = [];
    const s = await collectFiles('c', [entry('big.yaml', 11), entry('ok.yaml', 10), entry('grown.yaml', null)], compileGlobs(['*.yaml']), {
      limits: { fileBytes: 10 },
      read: (e, max) => {
        reads.push(e.path);
        if (e.path === 'grown.yaml') return Promise.reject(new ManifestFileError('MANIFEST_FILE_TOO_LARGE', `more than ${max}`));
        return read(e);
      },
    });
    expect(reads.sort()).toEqual(['grown.yaml', 'ok.yaml']);
    expect(s.files.map((f) => f.path)).toEqual(['ok.yaml']);
    expect(s.errors.map((e) => [e.code, e.path])).toEqual([
      ['MANIFEST_FILE_TOO_LARGE', 'big.yaml'],
      ['MANIFEST_FILE_TOO_LARGE', 'grown.yaml'],
    ]);
  });

  test('past the project limit, that file and every later one are left out', async () => {
    const entries = ['a', 'b', 'c', 'd'].map((p) => entry(`${p}.yaml`, 4));
    const s = await collectFiles('c', entries, compileGlobs(['*.yaml']), { read, limits: { projectBytes: 10 }, concurrency: 3 });
    expect(s.files.map((f) => f.path)).toEqual(['a.yaml', 'b.yaml']);
    expect(s.bytes).toBe(8);
    expect(s.errors).toEqual([{ code: 'MANIFEST_PROJECT_TOO_LARGE', message: expect.stringContaining('2 file(s)'), path: 'c.yaml' }]);
  });

  test('symbolic links and odd paths that match are reported, not sent', async () => {
    const s = await collectFiles('c', [entry('link.yaml', 1, false), entry('bad\uFFFD.yaml', 1), entry('ok.yaml', 1)], compileGlobs(['*.yaml']), { read });
    expect(s.files.map((f) => f.path)).toEqual(['ok.yaml']);
    expect(s.errors.map((e) => e.code)).toEqual(['MANIFEST_INVALID_PATH', 'MANIFEST_INVALID_PATH']);
  });

  test('any other read failure fails the whole read (tried again later)', async () => {
    await expect(collectFiles('c', [entry('a.yaml', 1)], compileGlobs(['*.yaml']), { read: () => Promise.reject(new Error('GitLab is down')) })).rejects.toThrow('GitLab is down');
  });
});
