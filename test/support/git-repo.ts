/**
 * A real Git repository for tests, made with the git CLI in a folder of the test's: `commit(files)`
 * writes (or, with null, deletes) files and commits them on the current branch, returning the commit
 * id; `git(...)` runs any other git command in it (tags, branches). System and global git
 * configuration are ignored, so tests behave the same on every machine.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export class TestGitRepo {
  constructor(
    readonly dir: string,
    branch = 'main',
  ) {
    mkdirSync(dir, { recursive: true });
    this.git('init', '-q', '-b', branch);
    this.git('config', 'user.email', 'test@example.com');
    this.git('config', 'user.name', 'Test');
    this.git('config', 'commit.gpgsign', 'false');
  }

  git(...args: string[]): string {
    return execFileSync('git', ['-C', this.dir, ...args], { env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' } })
      .toString()
      .trim();
  }

  commit(files: Record<string, string | Buffer | null>, message = 'change'): string {
    for (const [path, content] of Object.entries(files)) {
      const full = join(this.dir, path);
      if (content === null) rmSync(full);
      else {
        mkdirSync(dirname(full), { recursive: true });
        writeFileSync(full, content);
      }
    }
    this.git('add', '-A');
    this.git('commit', '-q', '--allow-empty', '-m', message);
    return this.git('rev-parse', 'HEAD');
  }
}
