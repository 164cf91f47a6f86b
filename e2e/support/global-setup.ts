/**
 * Jest global setup of the e2e project (jest.config.js): provisions the real servers the suites use
 * (e2e/provision.sh: etcd, kube-apiserver built from Debian's source package, checks helm and
 * kubectl; a second run takes a fraction of a second) and builds the programs once (`npm run build`),
 * since the suites run kas and agentk as real child processes from dist/.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function step(what: string, command: string, args: string[]): void {
  const started = Date.now();
  const r = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    throw new Error(`e2e setup: ${what} failed (${command} ${args.join(' ')} exited with ${r.status ?? r.signal}${r.error ? `: ${r.error.message}` : ''}); see its output above`);
  }
  process.stdout.write(`[e2e setup] ${what}: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

export default function globalSetup(): void {
  process.stdout.write('\n');
  step('provisioning (e2e/provision.sh)', 'bash', [path.join(root, 'e2e', 'provision.sh')]);
  step('build (npm run build)', 'npm', ['run', 'build', '--silent']);
}
