/**
 * Standalone mode: a manifest project in any Git repository (`standalone.manifest_projects[].git`):
 * HTTPS, SSH or a local path, read with the `git` client. Each poll resolves the ref with
 * `git ls-remote` (no data transferred); only a new commit is fetched (`fetch --depth 1`) into a
 * bare repository of kas's cache folder, listed with `ls-tree` and read with one `cat-file --batch`.
 * Operations on one repository run one at a time.
 *
 * Credentials (`credentials_file`): for an HTTPS URL the file holds `username:password` (or a token
 * alone, sent with the user name `oauth2`), passed to git in its environment (never on a command
 * line); for an SSH URL it is the private key.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { collectFiles, compileGlobs, ManifestFileError, ManifestProblemError, type ListedEntry, type ManifestLimits, type ManifestProjectSpec, type SourceResult } from './manifest-source.js';

const GIT_TIMEOUT_MS = 120_000;
/** Largest output of a listing command (ls-remote, ls-tree). */
const MAX_LIST_OUTPUT = 64 * 1024 * 1024;

/** Thrown when git itself failed (the network, the server, authentication). */
export class GitCommandError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'GitCommandError';
  }
}

export interface GitRemote {
  url: string;
  /** HTTPS: `user:password` or a token; SSH: the private key's path. */
  credentials?: { kind: 'basic'; header: string } | { kind: 'ssh_key'; file: string };
}

/** Whether a URL is SSH (ssh://, or scp-like user@host:path). */
export function isSshUrl(url: string): boolean {
  return url.startsWith('ssh://') || url.startsWith('git+ssh://') || /^[^/:@\s]+@[^/:\s]+:/.test(url);
}

/** The Authorization header of HTTPS credentials `user:password`, or a token alone. */
export function basicAuthHeader(content: string): string {
  const text = content.replace(/\r?\n$/, '');
  const pair = text.includes(':') ? text : `oauth2:${text}`;
  return `Authorization: Basic ${Buffer.from(pair).toString('base64')}`;
}

/** Branch and tag names git accepts, and nothing a command line or refspec could misread. */
const REF_NAME = /^(?!\/|.*\/\/|.*\/$|.*\.\.|.*@\{|.*\.lock$|.*\/\.|\.)[^\0-\x20\x7f~^:?*[\\]{1,255}$/;

interface Run {
  stdout: Buffer;
  stderr: string;
}

export class GitManifests {
  private readonly dir: string;
  private chain: Promise<unknown> = Promise.resolve();
  private initialised = false;

  constructor(
    private readonly remote: GitRemote,
    cacheRoot: string,
    private readonly limits?: Partial<ManifestLimits>,
  ) {
    if (remote.url.startsWith('-')) throw new Error('a Git URL cannot start with "-"');
    this.dir = join(cacheRoot, `${createHash('sha256').update(remote.url).digest('hex').slice(0, 24)}.git`);
  }

  /** Reads the project at its ref; one read at a time per repository. */
  read(spec: ManifestProjectSpec, known: string | undefined): Promise<SourceResult> {
    const next = this.chain.then(() => this.readNow(spec, known));
    this.chain = next.catch(() => undefined);
    return next;
  }

  private env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      LC_ALL: 'C',
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_ASKPASS: 'echo',
      SSH_ASKPASS: 'echo',
      GIT_SSH_COMMAND: 'ssh -o BatchMode=yes',
    };
    const c = this.remote.credentials;
    if (c?.kind === 'basic') {
      env.GIT_CONFIG_COUNT = '1';
      env.GIT_CONFIG_KEY_0 = 'http.extraHeader';
      env.GIT_CONFIG_VALUE_0 = c.header;
    } else if (c?.kind === 'ssh_key') {
      env.GIT_SSH_COMMAND = `ssh -o BatchMode=yes -o IdentitiesOnly=yes -i '${c.file.replace(/'/g, `'\\''`)}'`;
    }
    return env;
  }

  private git(args: string[], options: { cwd?: boolean; maxOutput?: number } = {}): Promise<Run> {
    const fullArgs = options.cwd === false ? args : ['-C', this.dir, ...args];
    return new Promise((resolve, reject) => {
      const child = spawn('git', fullArgs, { env: this.env(), stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      let outBytes = 0;
      let err = '';
      const max = options.maxOutput ?? MAX_LIST_OUTPUT;
      const timer = setTimeout(() => child.kill('SIGKILL'), GIT_TIMEOUT_MS);
      child.stdout.on('data', (c: Buffer) => {
        outBytes += c.length;
        if (outBytes > max) child.kill('SIGKILL');
        else out.push(c);
      });
      child.stderr.on('data', (c: Buffer) => {
        if (err.length < 4096) err += c.toString();
      });
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(new GitCommandError(`git could not run: ${e.message}`, null, ''));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve({ stdout: Buffer.concat(out), stderr: err });
        else {
          const why = signal ? `was stopped (${signal}; timeout ${GIT_TIMEOUT_MS} ms or output over ${max} bytes)` : `exited with ${code}`;
          reject(new GitCommandError(`git ${args[0]} ${why}: ${err.trim().split('\n').slice(-3).join(' ').slice(0, 500)}`, code, err));
        }
      });
    });
  }

  private async ensureRepository(): Promise<void> {
    if (this.initialised) return;
    const exists = await stat(join(this.dir, 'HEAD')).then(
      () => true,
      () => false,
    );
    if (!exists) {
      await mkdir(this.dir, { recursive: true });
      await this.git(['init', '--bare', '-q']);
    }
    this.initialised = true;
  }

  /** The commit a ref names on the remote now, and what to fetch for it; null when there is no such ref. */
  private async resolve(ref: ManifestProjectSpec['ref']): Promise<{ commit: string; fetch: string } | null> {
    if (ref?.commit !== undefined) return { commit: ref.commit, fetch: ref.commit };
    let patterns: string[];
    if (ref?.branch !== undefined || ref?.tag !== undefined) {
      const name = (ref.branch ?? ref.tag)!;
      if (!REF_NAME.test(name)) throw new ManifestProblemError('MANIFEST_REF_NOT_FOUND', `${JSON.stringify(name)} is not a valid branch or tag name`);
      patterns = ref.branch !== undefined ? [`refs/heads/${name}`] : [`refs/tags/${name}`, `refs/tags/${name}^{}`];
    } else {
      patterns = ['HEAD'];
    }
    const { stdout } = await this.git(['ls-remote', this.remote.url, ...patterns], { cwd: false });
    const lines = stdout
      .toString()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('\t') as [string, string]);
    const exact = (name: string) => lines.find(([, n]) => n === name)?.[0];
    // An annotated tag: the commit it points to.
    const commit = patterns.length === 2 ? (exact(patterns[1]!) ?? exact(patterns[0]!)) : exact(patterns[0]!);
    if (!commit || !/^[0-9a-f]{40,64}$/.test(commit)) return null;
    return { commit, fetch: patterns[0]! };
  }

  private async hasCommit(commit: string): Promise<string | null> {
    try {
      const { stdout } = await this.git(['rev-parse', '-q', '--verify', `${commit}^{commit}`]);
      return stdout.toString().trim() || null;
    } catch {
      return null;
    }
  }

  /** Makes the commit present in the cache; returns its full id (the fetched one when the ref moved meanwhile). */
  private async fetch(target: { commit: string; fetch: string }, isCommitRef: boolean): Promise<string | null> {
    const present = await this.hasCommit(target.commit);
    if (present) return present;
    if (isCommitRef) {
      // A full id can be asked for directly (servers allow reachable ids); else fetch branches and tags.
      if (/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(target.commit)) {
        try {
          await this.git(['fetch', '-q', '--depth', '1', '--no-tags', this.remote.url, target.commit]);
          return await this.hasCommit(target.commit);
        } catch {
          // fall through to the full fetch
        }
      }
      await this.git(['fetch', '-q', '--no-tags', this.remote.url, '+refs/heads/*:refs/kas/heads/*', '+refs/tags/*:refs/kas/tags/*']);
      return this.hasCommit(target.commit);
    }
    await this.git(['fetch', '-q', '--depth', '1', '--no-tags', this.remote.url, target.fetch]);
    return this.hasCommit('FETCH_HEAD');
  }

  private async list(commit: string): Promise<Array<ListedEntry & { object: string }>> {
    const { stdout } = await this.git(['ls-tree', '-r', '-l', '-z', '--full-tree', commit]);
    const out: Array<ListedEntry & { object: string }> = [];
    let start = 0;
    while (start < stdout.length) {
      const end = stdout.indexOf(0, start);
      const record = stdout.subarray(start, end < 0 ? stdout.length : end);
      start = end < 0 ? stdout.length : end + 1;
      const tab = record.indexOf(9);
      if (tab < 0) continue;
      const [mode, type, object, size] = record.subarray(0, tab).toString().trim().split(/\s+/) as [string, string, string, string];
      const path = record.subarray(tab + 1).toString('utf8');
      const regular = type === 'blob' && (mode === '100644' || mode === '100755');
      out.push({ path, object, size: regular ? Number(size) : null, regular });
    }
    return out;
  }

  private async readNow(spec: ManifestProjectSpec, known: string | undefined): Promise<SourceResult> {
    await this.ensureRepository();
    const resolved = await this.resolve(spec.ref);
    if (!resolved) throw new ManifestProblemError('MANIFEST_REF_NOT_FOUND', refMissing(spec.ref));
    if (resolved.commit === known) return { pushId: null, snapshot: null };
    const commit = await this.fetch(resolved, spec.ref?.commit !== undefined);
    if (!commit) throw new ManifestProblemError('MANIFEST_REF_NOT_FOUND', refMissing(spec.ref));
    if (commit === known) return { pushId: null, snapshot: null };
    const globs = compileGlobs(spec.globs);
    const entries = globs.matchers.length === 0 ? [] : await this.list(commit);
    const batch = new CatFileBatch(this.dir, this.env());
    try {
      const snapshot = await collectFiles(commit, entries, globs, { read: (e, max) => batch.read(e.object, max), concurrency: 1, limits: this.limits });
      return { pushId: null, snapshot };
    } finally {
      batch.close();
    }
  }
}

function refMissing(ref: ManifestProjectSpec['ref']): string {
  if (ref?.branch !== undefined) return `branch ${JSON.stringify(ref.branch)} does not exist`;
  if (ref?.tag !== undefined) return `tag ${JSON.stringify(ref.tag)} does not exist`;
  if (ref?.commit !== undefined) return `commit ${ref.commit} does not exist`;
  return 'the repository has no default branch (it is empty)';
}

/** One `git cat-file --batch` process: blobs by id, one at a time. */
class CatFileBatch {
  private readonly child;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private wake: (() => void) | null = null;
  private failed: Error | null = null;

  constructor(dir: string, env: NodeJS.ProcessEnv) {
    this.child = spawn('git', ['-C', dir, 'cat-file', '--batch'], { env, stdio: ['pipe', 'pipe', 'ignore'] });
    this.child.stdout.on('data', (c: Buffer) => {
      this.buffered.push(c);
      this.bufferedBytes += c.length;
      this.wake?.();
    });
    const fail = (err: Error) => {
      this.failed ??= err;
      this.wake?.();
    };
    // A write after git ended is answered by the close below.
    this.child.stdin.on('error', () => undefined);
    this.child.on('error', (e) => fail(new GitCommandError(`git cat-file could not run: ${e.message}`, null, '')));
    this.child.on('close', () => fail(new GitCommandError('git cat-file ended', null, '')));
  }

  private async take(n: number): Promise<Buffer> {
    while (this.bufferedBytes < n) {
      if (this.failed) throw this.failed;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
    const all = Buffer.concat(this.buffered);
    this.buffered = all.length > n ? [all.subarray(n)] : [];
    this.bufferedBytes = all.length - n;
    return all.subarray(0, n);
  }

  private async line(): Promise<string> {
    for (;;) {
      const all = Buffer.concat(this.buffered);
      const nl = all.indexOf(10);
      if (nl >= 0) {
        this.buffered = [all.subarray(nl + 1)];
        this.bufferedBytes = all.length - nl - 1;
        return all.subarray(0, nl).toString();
      }
      if (all.length > 4096) throw new GitCommandError('git cat-file answered an overlong line', null, '');
      if (this.failed) throw this.failed;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }

  async read(object: string, maxBytes: number): Promise<Buffer> {
    this.child.stdin.write(`${object}\n`);
    const header = await this.line();
    const [, type, sizeText] = header.split(' ');
    if (type === 'missing' || header.endsWith(' missing')) throw new ManifestFileError('MANIFEST_FILE_UNREADABLE', `object ${object} is missing from the repository`);
    const size = Number(sizeText);
    if (type !== 'blob' || !Number.isSafeInteger(size)) throw new GitCommandError(`git cat-file answered ${header.slice(0, 200)}`, null, '');
    if (size > maxBytes) {
      // Still consumed, so the next answer lines up; the limit of a listing stops this before.
      await this.take(size + 1);
      throw new ManifestFileError('MANIFEST_FILE_TOO_LARGE', `the file is ${size} bytes; the limit is ${maxBytes}`);
    }
    const data = await this.take(size + 1);
    return Buffer.from(data.subarray(0, size));
  }

  close(): void {
    this.child.stdin.end();
    if (this.child.exitCode === null) this.child.kill();
  }
}
