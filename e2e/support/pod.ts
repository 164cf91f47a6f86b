/**
 * A stand-in for the kubelet, for the end-to-end tests: it reads a Deployment that a chart stored
 * in the real API server, writes the Secret and ConfigMap volumes its container mounts (read back
 * from the API server) into a temporary folder, and gives the command the container would run: the
 * image's ENTRYPOINT (from the Dockerfile) with the container's args, container paths mapped to
 * that folder, and the downward-API environment filled in. What it cannot do like a real pod (bind
 * fixed ports in a network namespace of its own, reach the API server in-cluster) the test adjusts.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Cluster } from './cluster.js';
import { parseDockerfile } from './dockerfile.js';
import { REPO_ROOT } from './helm.js';

interface VolumeMount {
  name: string;
  mountPath: string;
}
interface Volume {
  name: string;
  secret?: { secretName: string; items?: Array<{ key: string; path: string }> };
  configMap?: { name: string; items?: Array<{ key: string; path: string }> };
  emptyDir?: unknown;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}
interface ContainerSpec {
  name: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  volumeMounts?: VolumeMount[];
}
interface Deployment {
  metadata: { name: string; namespace: string };
  spec: { template: { spec: { containers: ContainerSpec[]; volumes?: Volume[]; serviceAccountName?: string } } };
}

export interface LocalPod {
  /** Folder standing for the container's file system (mounted volumes only). */
  root: string;
  podName: string;
  /** The UID the downward API's `metadata.uid` gives (made up: no Pod object exists). */
  podUid: string;
  serviceAccountName: string | undefined;
  /** The program and its arguments, with container paths mapped into `root`. */
  command: string[];
  env: Record<string, string>;
  /** A container path mapped into `root`. */
  local(containerPath: string): string;
  /** `value` mapped into `root` when it is a path on one of the container's volumes, else unchanged. */
  localize(value: string): string;
  cleanup(): void;
}

/**
 * The container `containerName` of Deployment `namespace/name`, as a local command. `dockerfile`
 * gives the image's ENTRYPOINT and CMD; the image's WORKDIR holds the same dist/ layout as the
 * checkout after `npm run build`, so relative paths resolve against the repository.
 */
export async function localPod(cluster: Cluster, namespace: string, name: string, dockerfile: string): Promise<LocalPod> {
  const get = async <T>(apiPath: string): Promise<T> => {
    const r = await cluster.request('GET', apiPath);
    if (r.status !== 200) throw new Error(`GET ${apiPath} answered ${r.status}: ${r.body.toString()}`);
    return r.json as T;
  };
  const deployment = await get<Deployment>(`/apis/apps/v1/namespaces/${namespace}/deployments/${name}`);
  const pod = deployment.spec.template.spec;
  if (pod.containers.length !== 1) throw new Error(`Deployment ${namespace}/${name} has ${pod.containers.length} containers; expected one`);
  const container = pod.containers[0]!;
  const root = mkdtempSync(path.join(os.tmpdir(), `pod-${name}-`));
  const mounts = [...(container.volumeMounts ?? [])].sort((a, b) => b.mountPath.length - a.mountPath.length);
  const local = (containerPath: string): string => {
    const mount = mounts.find((m) => containerPath === m.mountPath || containerPath.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
    if (!mount) throw new Error(`${containerPath} is on no volume of ${namespace}/${name}`);
    return path.join(root, containerPath);
  };

  for (const mount of container.volumeMounts ?? []) {
    const volume = pod.volumes?.find((v) => v.name === mount.name);
    if (!volume) throw new Error(`volume ${mount.name} of ${namespace}/${name} is not defined`);
    const dir = path.join(root, mount.mountPath);
    mkdirSync(dir, { recursive: true });
    let data: Record<string, Buffer> | null = null;
    let items: Array<{ key: string; path: string }> | undefined;
    if (volume.secret) {
      const secret = await get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${namespace}/secrets/${volume.secret.secretName}`);
      data = Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
      items = volume.secret.items;
    } else if (volume.configMap) {
      const configMap = await get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${namespace}/configmaps/${volume.configMap.name}`);
      data = Object.fromEntries(Object.entries(configMap.data ?? {}).map(([k, v]) => [k, Buffer.from(v)]));
      items = volume.configMap.items;
    } else if (volume.emptyDir === undefined) {
      throw new Error(`volume ${volume.name} of ${namespace}/${name}: only secret, configMap and emptyDir volumes are supported here`);
    }
    if (data) {
      for (const item of items ?? Object.keys(data).map((key) => ({ key, path: key }))) {
        const content = data[item.key];
        if (content === undefined) throw new Error(`volume ${volume.name} of ${namespace}/${name}: key ${item.key} is missing`);
        mkdirSync(path.dirname(path.join(dir, item.path)), { recursive: true });
        writeFileSync(path.join(dir, item.path), content, { mode: 0o600 });
      }
    }
  }

  const podName = `${name}-local-0`;
  const podUid = randomUUID();
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = podName;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') env[e.name] = namespace;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.uid') env[e.name] = podUid;
    else throw new Error(`env ${e.name} of ${namespace}/${name}: unsupported source ${JSON.stringify(e.valueFrom)}`);
  }

  const image = parseDockerfile(path.join(REPO_ROOT, dockerfile)).at(-1)!;
  const entrypoint = container.command ?? image.entrypoint ?? [];
  const args = container.args ?? (container.command ? [] : image.cmd ?? []);
  if (entrypoint[0] !== 'node') throw new Error(`${dockerfile}: expected an ENTRYPOINT that runs node, got ${JSON.stringify(entrypoint)}`);
  const localize = (value: string): string => (mounts.some((mount) => value.startsWith(`${mount.mountPath.replace(/\/$/, '')}/`)) ? local(value) : value);
  // Paths in flags ("--flag=/path" or "/path") that are on a volume move into `root`.
  const mapArg = (arg: string): string => {
    const m = /^(--[^=]+=)?(\/.*)$/.exec(arg);
    return m ? `${m[1] ?? ''}${localize(m[2]!)}` : arg;
  };
  // The ENTRYPOINT's Node options (src/shared/node-flags.ts) stay as they are; its script path is the checkout's.
  const command = [process.execPath, ...entrypoint.slice(1).map((a) => (a.startsWith('/') || a.startsWith('-') ? a : path.join(REPO_ROOT, a))), ...args.map(mapArg)];

  return {
    root,
    podName,
    podUid,
    serviceAccountName: pod.serviceAccountName,
    command,
    env,
    local,
    localize,
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}
