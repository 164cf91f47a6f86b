/**
 * Where agentk's API server configuration comes from, by the rules kubectl users know:
 * `--kubeconfig FILE`, else the files of `KUBECONFIG` (separated like PATH, merged), else the
 * in-cluster service account when KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are set, else
 * `~/.kube/config`. The explicit choices (the flag, KUBECONFIG) win over the in-cluster account, as
 * in client-go; the in-cluster account wins over `~/.kube/config`, which in a pod is most likely a
 * leftover of the image, not the operator's choice. Only `env` is read, never process.env, so the
 * rules can be tested with a HOME and KUBECONFIG of the test's own.
 */
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { AgentConfigError } from '../config-error.js';

/** A kubeconfig source: the files to read and what names them in messages. */
export interface KubeconfigSource {
  /** The flag, variable or default file the files come from: `--kubeconfig`, `KUBECONFIG` or `~/.kube/config`. */
  key: '--kubeconfig' | 'KUBECONFIG' | '~/.kube/config';
  /** The files, first one first (the first to define a name or the current context wins). */
  files: string[];
}

/** A loaded (and, for KUBECONFIG, merged) kubeconfig. */
export interface LoadedKubeconfig {
  kubeConfig: KubeConfig;
  /** The `token-file` of each user, absolute (see loadKubeconfigFile). */
  tokenFiles: Map<string, string>;
  /** The files that were read (KUBECONFIG may name files that do not exist: they are skipped). */
  files: string[];
}

/**
 * The kubeconfig to use, or null for the in-cluster service account. Throws AgentConfigError
 * naming `--kubeconfig` when there is none of them.
 */
export function kubeconfigSource(flag: string | undefined, env: NodeJS.ProcessEnv): KubeconfigSource | null {
  if (flag !== undefined) return { key: '--kubeconfig', files: [flag] };
  const listed = (env.KUBECONFIG ?? '').split(delimiter).filter((f) => f !== '');
  if (listed.length > 0) return { key: 'KUBECONFIG', files: listed };
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) return null;
  const home = env.HOME ? join(env.HOME, '.kube', 'config') : undefined;
  if (home !== undefined && existsSync(home)) return { key: '~/.kube/config', files: [home] };
  throw new AgentConfigError(
    '--kubeconfig',
    `not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set), KUBECONFIG is not set and there is no ${home ?? '~/.kube/config (HOME is not set)'}: pass a kubeconfig file`,
  );
}

/**
 * Reads the source's files. Of KUBECONFIG's files, those that do not exist are skipped (as kubectl
 * does) but at least one must; the merge is client-node's `mergeConfig`, given only the clusters,
 * users and contexts whose names no earlier file defined, since kubectl keeps the first definition
 * where client-node would refuse the duplicate.
 */
export function loadKubeconfigSource(source: KubeconfigSource): LoadedKubeconfig {
  const merged = new KubeConfig();
  const tokenFiles = new Map<string, string>();
  const files: string[] = [];
  for (const file of source.files) {
    if (source.key === 'KUBECONFIG' && !existsSync(file)) continue;
    const part = new KubeConfig();
    let partTokenFiles: Map<string, string>;
    try {
      partTokenFiles = loadKubeconfigFile(part, file);
    } catch (err) {
      throw new AgentConfigError(source.key, `cannot load ${file}: ${(err as Error).message}`, { cause: err });
    }
    files.push(file);
    part.clusters = part.clusters.filter((c) => !merged.getCluster(c.name));
    part.users = part.users.filter((u) => !merged.getUser(u.name));
    part.contexts = part.contexts.filter((c) => !merged.getContextObject(c.name));
    for (const user of part.users) {
      const tokenFile = partTokenFiles.get(user.name);
      if (tokenFile !== undefined) tokenFiles.set(user.name, tokenFile);
    }
    merged.mergeConfig(part, true);
    if (!merged.getCurrentContext() && part.getCurrentContext()) merged.setCurrentContext(part.getCurrentContext());
  }
  if (files.length === 0) throw new AgentConfigError(source.key, `none of its files exists (${source.files.join(', ')})`);
  return { kubeConfig: merged, tokenFiles, files };
}

/**
 * Loads one kubeconfig file into `kc` and returns the `token-file` of each user, made absolute
 * against the file's folder. The client library would read every user's token file once, at load
 * and relative to the working directory; agentk re-reads the current user's instead.
 */
export function loadKubeconfigFile(kc: KubeConfig, file: string): Map<string, string> {
  const doc = parseYaml(readFileSync(file, 'utf8')) as { users?: unknown } | null;
  if (typeof doc !== 'object' || doc === null) throw new Error('not a kubeconfig (expected a YAML map)');
  const tokenFiles = new Map<string, string>();
  if (Array.isArray(doc.users)) {
    for (const entry of doc.users as Array<{ name?: unknown; user?: Record<string, unknown> } | null>) {
      const path = entry?.user?.['token-file'];
      if (typeof entry?.name === 'string' && typeof path === 'string' && path !== '') {
        tokenFiles.set(entry.name, isAbsolute(path) ? path : join(dirname(file), path));
      }
      if (entry?.user) delete entry.user['token-file'];
    }
  }
  kc.loadFromString(stringifyYaml(doc));
  kc.makePathsAbsolute(dirname(file));
  return tokenFiles;
}

/**
 * The in-cluster API server address from `env`, by the rules of client-node's loadFromCluster
 * (which reads process.env): plain HTTP on the ports 80, 8080 and 8001, brackets around IPv6.
 */
export function inClusterServer(env: NodeJS.ProcessEnv): string {
  const host = env.KUBERNETES_SERVICE_HOST ?? '';
  const port = env.KUBERNETES_SERVICE_PORT ?? '';
  const scheme = port === '80' || port === '8080' || port === '8001' ? 'http' : 'https';
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
