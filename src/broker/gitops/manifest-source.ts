/**
 * Where manifest files come from (GitLab, a Git repository, a local directory: gitlab-manifests.ts,
 * git-manifests.ts, directory-manifests.ts) and what every source shares: the globs that select
 * files, and the limits a snapshot keeps (100 globs, 1,000 files, 5 MiB a file, 20 MiB in all, no
 * file matched twice). A problem that says something about the project (refused, no such ref, a limit)
 * is a ManifestProblemError or an entry of the snapshot's `errors`; any other failure (GitLab or the
 * network down) is thrown as is, and the poller keeps the last snapshot and tries again.
 */
import { Minimatch } from 'minimatch';
import {
  MANIFEST_ERROR_CODES,
  MAX_MANIFEST_FILE_BYTES,
  MAX_MANIFEST_FILES,
  MAX_MANIFEST_PATHS,
  MAX_MANIFEST_PROJECT_BYTES,
  MAX_SNAPSHOT_ERRORS,
  isSafeManifestPath,
  type FileRecord,
  type ManifestErrorCode,
  type ManifestProblem,
} from '../../protocol/gitops.js';

/** The glob of a manifest project without `paths`. */
export const DEFAULT_MANIFEST_GLOB = '**/*.{yaml,yml,json}';

/** Which files of which project, at which ref. */
export interface ManifestProjectSpec {
  /** The project as the agent configuration names it (full path, or a number). */
  id: string;
  ref: { branch?: string; tag?: string; commit?: string } | undefined;
  globs: string[];
}

/** Who asks: the agent (GitLab mode checks that it may read the project). */
export interface ManifestReader {
  agentId: number;
  /** The agent's token (GitLab mode); null when unknown. */
  token: string | null;
}

/** One read of a project at one commit. */
export interface SourceSnapshot {
  commit: string;
  files: FileRecord[];
  bytes: number;
  errors: ManifestProblem[];
  complete: boolean;
}

export interface SourceResult {
  /** The project's number, for git push notifications (null when the source has none). */
  pushId: number | null;
  /** The snapshot, or null when the commit is still `known`. */
  snapshot: SourceSnapshot | null;
}

export interface ManifestSource {
  /**
   * Reads the project's files at the commit its ref names now, or only resolves the ref when that
   * commit is `known`. Throws ManifestProblemError for a problem of the project (refused, no such
   * ref); any other error is a failure to reach the source.
   */
  read(reader: ManifestReader, spec: ManifestProjectSpec, known: string | undefined): Promise<SourceResult>;
  close(): Promise<void>;
}

/** A problem of the project itself: the poller sends a snapshot without files that names it. */
export class ManifestProblemError extends Error {
  constructor(
    readonly code: ManifestErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ManifestProblemError';
  }

  get problem(): ManifestProblem {
    return { code: this.code, message: this.message };
  }
}

/** A file that could not be read (it is left out of the snapshot, which is then incomplete). */
export class ManifestFileError extends Error {
  constructor(
    readonly code: 'MANIFEST_FILE_TOO_LARGE' | 'MANIFEST_FILE_UNREADABLE' | 'MANIFEST_INVALID_PATH',
    message: string,
  ) {
    super(message);
    this.name = 'ManifestFileError';
  }
}

export interface CompiledGlobs {
  matchers: Minimatch[];
  /** Folders that hold every match (for sources that list a folder at a time); '' is the whole project. */
  prefixes: string[];
  problems: ManifestProblem[];
}

const MAGIC = /[*?[\]{}()!+@]/;

/** The literal folder a glob starts with ("manifests/prod" of "manifests/prod/**\/*.yaml"). */
function staticPrefix(glob: string): string {
  const segments = glob.split('/');
  const out: string[] = [];
  for (const seg of segments.slice(0, -1)) {
    if (MAGIC.test(seg)) break;
    out.push(seg);
  }
  return out.join('/');
}

/**
 * Compiles the globs of a project: a leading "/" means the project's root; hidden files and folders
 * match only when a glob names them literally; brace sets (`{yaml,yml}`) and `**` work as in a shell.
 */
export function compileGlobs(globs: readonly string[]): CompiledGlobs {
  const problems: ManifestProblem[] = [];
  if (globs.length > MAX_MANIFEST_PATHS) {
    problems.push({ code: 'MANIFEST_TOO_MANY_PATHS', message: `the project lists ${globs.length} paths; the limit is ${MAX_MANIFEST_PATHS}` });
    return { matchers: [], prefixes: [], problems };
  }
  const matchers: Minimatch[] = [];
  const prefixes = new Set<string>();
  for (const raw of globs) {
    const glob = raw.replace(/^\/+/, '');
    if (glob === '' || glob.split('/').some((s) => s === '..' || s === '.')) {
      problems.push({ code: 'MANIFEST_INVALID_GLOB', message: `glob ${JSON.stringify(raw)} must name files inside the project (not empty, no "." or ".." folder)` });
      continue;
    }
    matchers.push(new Minimatch(glob, { dot: false, nonegate: true, nocomment: true }));
    prefixes.add(staticPrefix(glob));
  }
  // A prefix inside another one is listed with it.
  const sorted = [...prefixes].sort();
  const kept = sorted.filter((p) => !sorted.some((q) => q !== p && (q === '' || p.startsWith(`${q}/`))));
  return { matchers, prefixes: kept, problems };
}

/** One candidate file of a listing. */
export interface ListedEntry {
  path: string;
  /** Size in bytes when the listing says; null when only reading tells. */
  size: number | null;
  /** Regular files only; a symlink or submodule that matches is reported and left out. */
  regular: boolean;
}

export interface CollectOptions<E extends ListedEntry> {
  /** Reads one file: at most maxBytes (a larger file: ManifestFileError MANIFEST_FILE_TOO_LARGE). */
  read: (entry: E, maxBytes: number) => Promise<Buffer>;
  /** Files read at once (order of the result is kept). */
  concurrency?: number;
  /** Limits (tests make them small); default the protocol's. */
  limits?: Partial<ManifestLimits>;
}

export interface ManifestLimits {
  files: number;
  fileBytes: number;
  projectBytes: number;
}

export const DEFAULT_LIMITS: Readonly<ManifestLimits> = Object.freeze({ files: MAX_MANIFEST_FILES, fileBytes: MAX_MANIFEST_FILE_BYTES, projectBytes: MAX_MANIFEST_PROJECT_BYTES });

/** The files a listing contributes: those matched by a glob, sorted by path, with the problems found. */
export function selectEntries<E extends ListedEntry>(entries: readonly E[], globs: CompiledGlobs, limits: ManifestLimits = DEFAULT_LIMITS): { selected: E[]; problems: ManifestProblem[] } {
  const problems: ManifestProblem[] = [...globs.problems];
  const selected: E[] = [];
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.path)) continue;
    const matching = globs.matchers.filter((m) => m.match(e.path)).length;
    if (matching === 0) continue;
    seen.add(e.path);
    if (!e.regular) {
      problems.push({ code: 'MANIFEST_INVALID_PATH', message: 'not a regular file (a symbolic link or a submodule)', path: e.path });
      continue;
    }
    if (!isSafeManifestPath(e.path) || e.path.includes('\uFFFD')) {
      problems.push({ code: 'MANIFEST_INVALID_PATH', message: 'the path cannot be sent (not UTF-8, too long, or not a plain relative path)', path: e.path.slice(0, 1024) });
      continue;
    }
    if (matching > 1) problems.push({ code: 'MANIFEST_DUPLICATE_FILE', message: `the file is matched by ${matching} globs; it is read once`, path: e.path });
    selected.push(e);
  }
  selected.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (selected.length > limits.files) {
    problems.push({ code: 'MANIFEST_TOO_MANY_FILES', message: `the globs match ${selected.length} files; the limit is ${limits.files}, so the ${selected.length - limits.files} last in path order are left out` });
    selected.length = limits.files;
  }
  return { selected, problems };
}

/**
 * Reads the selected files within the limits: a file over the per-file limit is left out; once the
 * total would pass the project limit, that file and every later one are left out. Failures other
 * than ManifestFileError reject (the whole read is tried again later).
 */
export async function collectFiles<E extends ListedEntry>(commit: string, entries: readonly E[], globs: CompiledGlobs, options: CollectOptions<E>): Promise<SourceSnapshot> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const { selected, problems } = selectEntries(entries, globs, limits);
  const files: FileRecord[] = [];
  let bytes = 0;
  let stopped = false;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const readOne = async (e: E): Promise<Buffer | ManifestFileError> => {
    if (e.size !== null && e.size > limits.fileBytes) return new ManifestFileError('MANIFEST_FILE_TOO_LARGE', `the file is ${e.size} bytes; the limit is ${limits.fileBytes}`);
    try {
      return await options.read(e, limits.fileBytes);
    } catch (err) {
      if (err instanceof ManifestFileError) return err;
      throw err;
    }
  };
  for (let i = 0; i < selected.length && !stopped; i += concurrency) {
    const batch = selected.slice(i, i + concurrency);
    // Sizes the listing knows stop the read before anything is fetched.
    const results = await Promise.all(batch.map((e) => readOne(e)));
    for (let j = 0; j < batch.length; j++) {
      const e = batch[j]!;
      const r = results[j]!;
      if (r instanceof ManifestFileError) {
        problems.push({ code: r.code, message: r.message, path: e.path });
        continue;
      }
      if (r.byteLength > limits.fileBytes) {
        problems.push({ code: 'MANIFEST_FILE_TOO_LARGE', message: `the file is ${r.byteLength} bytes; the limit is ${limits.fileBytes}`, path: e.path });
        continue;
      }
      if (bytes + r.byteLength > limits.projectBytes) {
        const left = selected.length - (i + j);
        problems.push({ code: 'MANIFEST_PROJECT_TOO_LARGE', message: `the files add up to more than ${limits.projectBytes} bytes; ${left} file(s) from this one on are left out`, path: e.path });
        stopped = true;
        break;
      }
      bytes += r.byteLength;
      files.push({ path: e.path, data: r });
    }
  }
  return { commit, files, bytes, errors: capProblems(problems), complete: problems.length === 0 };
}

/** At most MAX_SNAPSHOT_ERRORS problems; the last one says how many more there were. */
export function capProblems(problems: ManifestProblem[]): ManifestProblem[] {
  if (problems.length <= MAX_SNAPSHOT_ERRORS) return problems;
  const kept = problems.slice(0, MAX_SNAPSHOT_ERRORS - 1);
  kept.push({ code: problems[MAX_SNAPSHOT_ERRORS - 1]!.code, message: `and ${problems.length - kept.length} more problems` });
  return kept;
}

/** The code's description, for messages. */
export function describeCode(code: ManifestErrorCode): string {
  return MANIFEST_ERROR_CODES[code];
}
