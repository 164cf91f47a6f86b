/**
 * Standalone mode: a manifest project that is a local folder (`standalone.manifest_projects[].directory`).
 * Every poll lists the folder (hidden folders skipped, symbolic links reported when a glob matches
 * them) and reads the matching files; the snapshot's commit is `sha256:` of the file set (each path
 * and the SHA-256 of its content), so an unchanged folder is not sent again.
 */
import { createHash } from 'node:crypto';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { collectFiles, compileGlobs, ManifestFileError, ManifestProblemError, type ListedEntry, type ManifestLimits, type SourceResult, type SourceSnapshot } from './manifest-source.js';

/** Most folder entries looked at in one poll (a mistaken `directory: /` stops here). */
const MAX_WALK_ENTRIES = 100_000;

interface DirEntry extends ListedEntry {
  full: string;
}

async function walk(root: string, prefixes: string[]): Promise<DirEntry[]> {
  const out: DirEntry[] = [];
  let seen = 0;
  const visit = async (rel: string): Promise<void> => {
    let names;
    try {
      names = await readdir(join(root, rel), { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (rel !== '' && (code === 'ENOENT' || code === 'ENOTDIR')) return;
      throw err;
    }
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const d of names) {
      if (++seen > MAX_WALK_ENTRIES) throw new ManifestProblemError('MANIFEST_TOO_MANY_FILES', `the folder has more than ${MAX_WALK_ENTRIES} entries under the globs' folders`);
      const path = rel === '' ? d.name : `${rel}/${d.name}`;
      if (d.isDirectory()) {
        if (!d.name.startsWith('.')) await visit(path);
      } else {
        out.push({ path, full: join(root, path), size: null, regular: d.isFile() });
      }
    }
  };
  for (const p of prefixes) await visit(p);
  return out;
}

async function readBounded(file: string, maxBytes: number): Promise<Buffer> {
  const handle = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new ManifestFileError('MANIFEST_FILE_UNREADABLE', `cannot open the file: ${err.code ?? err.message}`);
  });
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new ManifestFileError('MANIFEST_INVALID_PATH', 'not a regular file');
    if (stat.size > maxBytes) throw new ManifestFileError('MANIFEST_FILE_TOO_LARGE', `the file is ${stat.size} bytes; the limit is ${maxBytes}`);
    // One byte more than the limit tells a file that grew since stat.
    const buf = Buffer.alloc(Math.min(maxBytes + 1, stat.size + 1));
    let size = 0;
    while (size < buf.length) {
      const { bytesRead } = await handle.read(buf, size, buf.length - size, size);
      if (bytesRead === 0) break;
      size += bytesRead;
    }
    if (size > maxBytes) throw new ManifestFileError('MANIFEST_FILE_TOO_LARGE', `the file is more than ${maxBytes} bytes; the limit is ${maxBytes}`);
    return buf.subarray(0, size);
  } finally {
    await handle.close();
  }
}

/** The commit of a directory snapshot: SHA-256 over each file's path and content digest, in path order. */
export function directoryCommit(s: Pick<SourceSnapshot, 'files' | 'errors'>): string {
  const h = createHash('sha256');
  for (const f of s.files) h.update(f.path).update('\0').update(createHash('sha256').update(f.data).digest()).update('\0');
  // Problems change what agentk may do (prune or not), so they are part of the version too.
  for (const e of s.errors) h.update(`${e.code}\0${e.path ?? ''}\0`);
  return `sha256:${h.digest('hex')}`;
}

export class DirectoryManifests {
  constructor(
    private readonly root: string,
    private readonly limits?: Partial<ManifestLimits>,
  ) {}

  async read(globList: string[], known: string | undefined): Promise<SourceResult> {
    const globs = compileGlobs(globList);
    let entries: DirEntry[];
    try {
      entries = globs.matchers.length === 0 ? [] : await walk(this.root, globs.prefixes);
    } catch (err) {
      if (err instanceof ManifestProblemError) throw err;
      throw new ManifestProblemError('MANIFEST_SOURCE_FAILED', `cannot list ${this.root}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    const snapshot = await collectFiles('', entries, globs, { read: (e, max) => readBounded(e.full, max), concurrency: 8, limits: this.limits });
    snapshot.commit = directoryCommit(snapshot);
    return { pushId: null, snapshot: snapshot.commit === known ? null : snapshot };
  }
}
