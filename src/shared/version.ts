/** Version and build facts of this build, reported in handshakes, logs and the API for GitLab. */
import { readFileSync } from 'node:fs';

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    if (pkg.version) return pkg.version;
  } catch {
    // Running from src/ (tests): package.json is one level less up.
  }
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export const BUILD_INFO = Object.freeze({
  version: process.env.BUILD_VERSION ?? packageVersion(),
  commit: process.env.BUILD_COMMIT ?? 'unknown',
  buildTime: process.env.BUILD_TIME ?? 'unknown',
});
