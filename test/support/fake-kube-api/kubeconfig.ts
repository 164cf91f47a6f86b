/** A kubeconfig for agentk (or kubectl) pointing at a test API server. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Writes `<dir>/kubeconfig`: its context `fake` points at `server` with a bearer token (and the CA,
 * if given); its current context points elsewhere, so a test that forgets `--context fake` fails.
 * Returns the file's path.
 */
export function writeKubeconfig(dir: string, server: string, token: string, ca?: string): string {
  const file = join(dir, 'kubeconfig');
  const caLine = ca ? `    certificate-authority-data: ${Buffer.from(ca).toString('base64')}\n` : '';
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: ${server}
${caLine}- name: elsewhere
  cluster:
    server: https://192.0.2.1:6443
users:
- name: agent
  user:
    token: ${token}
- name: nobody
  user: {}
contexts:
- name: fake
  context: {cluster: fake, user: agent}
- name: other
  context: {cluster: elsewhere, user: nobody}
current-context: other
`,
  );
  return file;
}
