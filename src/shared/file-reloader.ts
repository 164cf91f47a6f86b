/**
 * Follows files that tools replace while the process runs (cert-manager, the kubelet's projected
 * volumes) and rebuilds a value from them when they change. Kubernetes swaps a `..data` symlink in
 * the folder rather than writing the files, so the folders are watched (fs.watch), and since watch
 * events are not guaranteed everywhere (network and overlay file systems) the files' stat is also
 * checked every `pollMs`. Events are debounced: a tool that writes a certificate and then its key
 * produces one reload of the pair, not a half-written one. A new set of files that does not make a
 * valid value keeps the previous value; the failure is reported once per change.
 */
import { type FSWatcher, readFileSync, statSync, watch } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from './logger.js';

/** What a FileReloader is made with. */
export interface FileReloaderOptions<T> {
  /** The files, in the order `load` receives their contents. */
  paths: readonly string[];
  /** The value the files held when they were first read (at start, where a bad file is a configuration error). */
  initial: T;
  /** What the files held then, in `paths` order: a later event that leaves them so reloads nothing. */
  initialContents?: readonly Buffer[];
  /**
   * Builds the value from the files' contents. Throws an Error whose message says what is wrong and
   * names the configuration key (or flag) of the file, for the log line.
   */
  load(contents: readonly Buffer[]): T;
  /** Called with each new valid value, after it became `current`. */
  onReload?(value: T): void;
  /** Called when changed files could not be read or made no valid value (the old value is kept). */
  onError?(err: Error): void;
  logger: Logger;
  /** What is reloaded, in log lines (e.g. "agent listener certificate"). */
  what: string;
  /** How often the files' stat is checked besides watch events, ms (default 10 s). */
  pollMs?: number;
  /** How long to wait after the last change event before reading, ms (default 200). */
  debounceMs?: number;
}

/** Identity of a file's current content as stat sees it through symlinks; '' when it cannot be had. */
function signature(path: string): string {
  try {
    const s = statSync(path);
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
  } catch {
    return '';
  }
}

export class FileReloader<T> {
  private readonly options: FileReloaderOptions<T>;
  private value: T;
  private signatures: string[];
  /** The contents last read (valid or not): an event that changed nothing in them reloads nothing. */
  private lastContents: readonly Buffer[] | null;
  private readonly watchers: FSWatcher[] = [];
  private poll: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(options: FileReloaderOptions<T>) {
    this.options = options;
    this.value = options.initial;
    this.lastContents = options.initialContents ?? null;
    this.signatures = options.paths.map(signature);
  }

  /** The last valid value. */
  get current(): T {
    return this.value;
  }

  /** Starts following the files. Idempotent; `close()` stops for good. */
  start(): void {
    if (this.closed || this.poll) return;
    const { logger, what } = this.options;
    for (const dir of new Set(this.options.paths.map((p) => dirname(p)))) {
      try {
        const watcher = watch(dir, { persistent: false }, () => this.schedule());
        watcher.on('error', (err) => logger.debug({ err, dir }, `cannot watch the folder of the ${what}; checking it every poll period only`));
        this.watchers.push(watcher);
      } catch (err) {
        logger.debug({ err, dir }, `cannot watch the folder of the ${what}; checking it every poll period only`);
      }
    }
    this.poll = setInterval(() => this.check(), this.options.pollMs ?? 10_000);
    this.poll.unref();
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers) w.close();
    this.watchers.length = 0;
    if (this.poll) clearInterval(this.poll);
    if (this.debounce) clearTimeout(this.debounce);
    this.poll = this.debounce = null;
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      this.check();
    }, this.options.debounceMs ?? 200);
    this.debounce.unref();
  }

  /** Reloads when a file's stat changed since the last read. */
  private check(): void {
    if (this.closed) return;
    const now = this.options.paths.map(signature);
    if (now.every((s, i) => s === this.signatures[i])) return;
    this.signatures = now;
    this.reload();
  }

  private reload(): void {
    const { logger, what, paths } = this.options;
    let contents: Buffer[];
    let value: T;
    try {
      contents = paths.map((p) => readFileSync(p));
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (this.lastContents && contents.every((c, i) => c.equals(this.lastContents![i]!))) return;
    this.lastContents = contents;
    try {
      value = this.options.load(contents);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    this.value = value;
    logger.info({ files: paths }, `${what} reloaded: new connections use the new files`);
    this.options.onReload?.(value);
  }

  private fail(err: Error): void {
    const { logger, what, paths } = this.options;
    logger.warn({ err, files: paths }, `the changed ${what} files are not usable; keeping the previous ones`);
    this.options.onError?.(err);
  }
}
