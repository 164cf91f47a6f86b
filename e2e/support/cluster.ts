/**
 * A real Kubernetes API server for the end-to-end tests: etcd and kube-apiserver v1.20.2 (built by
 * e2e/provision.sh) on loopback, on free ports, with data in a temporary folder. TLS with a serving
 * certificate made here, a static admin token, RBAC authorization, and service-account token signing
 * (so the TokenRequest API works). There is no kubelet, scheduler or controller manager: objects are
 * stored, validated and watched, RBAC and impersonation are enforced, but no pod ever runs.
 *
 * `stop()` stops both servers by pid (call it in afterAll); a process exit handler and a watchdog
 * stop them too if the test process ends first (see processes.ts).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { generateSelfSignedCertificate } from '../../src/shared/tls-cert.js';
import { startProcess, type ManagedProcess } from './processes.js';
import { freePort } from '../../test/support/ports.js';
import { waitFor } from '../../test/support/wait.js';

export const KUBE_VERSION = 'v1.20.2';
export const PROVISION_SCRIPT = 'e2e/provision.sh';

/** Where e2e/provision.sh caches the kube-apiserver binary (keep in step with the script). */
export function kubeApiserverBinary(): string {
  const cache = process.env.GITLAB_AGENT_TS_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'gitlab-agent-ts');
  return path.join(cache, `kube-apiserver-${KUBE_VERSION}`);
}

function findOnPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  return null;
}


export interface ApiResponse {
  status: number;
  body: Buffer;
  /** The body parsed as JSON, or null. */
  json: unknown;
}

export interface Cluster {
  /** https://127.0.0.1:<port> */
  url: string;
  /** PEM of the serving certificate (self-signed: it is its own CA). */
  caPem: string;
  /** A static token of user "admin" in group system:masters. */
  adminToken: string;
  dir: string;
  /** The running kube-apiserver (a new process after startApiServer). */
  apiserver: ManagedProcess;
  etcd: ManagedProcess;
  /** http://127.0.0.1:<port> of etcd (its v3 JSON gateway is at /v3/...). */
  etcdUrl: string;
  /** Stops kube-apiserver (SIGKILL by default, so open watches are cut, not ended); etcd goes on. */
  stopApiServer(options?: { graceful?: boolean }): Promise<void>;
  /** Starts kube-apiserver again on the same port and etcd, and waits for /readyz. */
  startApiServer(): Promise<void>;
  /** stopApiServer then startApiServer. */
  restartApiServer(): Promise<void>;
  /** A request to the API server (admin token unless `token` is given). */
  request(method: string, apiPath: string, body?: unknown, options?: { token?: string; contentType?: string }): Promise<ApiResponse>;
  /** A short-lived token of a service account, from the TokenRequest API. */
  serviceAccountToken(namespace: string, name: string, expirationSeconds?: number): Promise<string>;
  stop(): Promise<void>;
}

export async function startCluster(): Promise<Cluster> {
  const binary = kubeApiserverBinary();
  if (!existsSync(binary)) {
    throw new Error(`kube-apiserver ${KUBE_VERSION} is missing: expected at ${binary}. Run 'bash ${PROVISION_SCRIPT}' (npm test runs it) to build it from Debian's kubernetes source package.`);
  }
  const etcdBinary = findOnPath('etcd');
  if (!etcdBinary) throw new Error(`etcd is not on the PATH. Run 'bash ${PROVISION_SCRIPT}' (npm test runs it) to install Debian's etcd-server.`);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-cluster-'));
  const file = (name: string, content: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, content, { mode: 0o600 });
    return p;
  };
  const cert = await generateSelfSignedCertificate();
  const serviceAccountKey = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  const adminToken = randomBytes(24).toString('hex');
  const files = {
    cert: file('serving.crt', cert.cert),
    key: file('serving.key', cert.key),
    saPub: file('sa.pub', serviceAccountKey.publicKey),
    saKey: file('sa.key', serviceAccountKey.privateKey),
    tokens: file('tokens.csv', `${adminToken},admin,admin-uid,"system:masters"\n`),
  };

  let etcd: ManagedProcess | null = null;
  let apiserver: ManagedProcess | null = null;
  const stopAll = async () => {
    await apiserver?.stop();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    let etcdUrl = '';
    // A port the OS just handed out can be taken again before etcd binds it: try a few times.
    for (let attempt = 1; ; attempt++) {
      const [clientPort, peerPort] = [await freePort(), await freePort()];
      etcdUrl = `http://127.0.0.1:${clientPort}`;
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      etcd = startProcess('etcd', etcdBinary, [
        '--name', 'e2e',
        '--data-dir', path.join(dir, 'etcd'),
        '--listen-client-urls', etcdUrl,
        '--advertise-client-urls', etcdUrl,
        '--listen-peer-urls', peerUrl,
        '--initial-advertise-peer-urls', peerUrl,
        '--initial-cluster', `e2e=${peerUrl}`,
        '--logger', 'zap',
        '--log-level', 'warn',
      ]);
      try {
        await waitUntil(async () => (await plainGet(`${etcdUrl}/health`)).includes('"health":"true"'), etcd, 'etcd to answer /health', 30_000);
        break;
      } catch (err) {
        await etcd.stop();
        if (attempt >= 3 || /bind: address already in use/.test(etcd.output) === false) throw err;
      }
    }

    let url = '';
    const apiserverArgs = (port: number) => [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${port}`,
        '--insecure-port=0',
        `--tls-cert-file=${files.cert}`,
        `--tls-private-key-file=${files.key}`,
        `--cert-dir=${path.join(dir, 'certs')}`,
        `--token-auth-file=${files.tokens}`,
        '--authorization-mode=RBAC',
        '--anonymous-auth=false',
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${files.saPub}`,
        `--service-account-signing-key-file=${files.saKey}`,
        '--service-cluster-ip-range=10.96.0.0/16',
        '--profiling=false',
        '--v=0',
      ];
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      url = `https://127.0.0.1:${port}`;
      apiserver = startProcess('kube-apiserver', binary, apiserverArgs(port));
      try {
        await waitUntil(async () => (await getStatus(`${url}/readyz`, cert.cert, adminToken)) === 200, apiserver, 'kube-apiserver to answer /readyz with 200', 90_000);
        break;
      } catch (err) {
        await apiserver.stop();
        if (attempt >= 3 || !/address already in use/.test(apiserver.output)) throw err;
      }
    }

    const agent = new https.Agent({ keepAlive: true, maxSockets: 16, ca: cert.cert });
    const request: Cluster['request'] = (method, apiPath, body, options = {}) =>
      new Promise<ApiResponse>((resolve, reject) => {
        const payload = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
        const req = https.request(new URL(apiPath, url), {
          method,
          agent,
          headers: {
            authorization: `Bearer ${options.token ?? adminToken}`,
            accept: 'application/json',
            ...(payload ? { 'content-type': options.contentType ?? 'application/json', 'content-length': payload.length } : {}),
          },
        });
        req.on('response', (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const buf = Buffer.concat(chunks);
            resolve({ status: res.statusCode ?? 0, body: buf, json: parseJson(buf) });
          });
        });
        req.on('error', reject);
        req.end(payload);
      });

    const cluster: Cluster = {
      url,
      caPem: cert.cert,
      adminToken,
      dir,
      apiserver: apiserver!,
      etcd: etcd!,
      etcdUrl,
      request,
      async stopApiServer({ graceful = false } = {}) {
        // The keep-alive sockets of `request` would only fail on their next use.
        agent.destroy();
        await cluster.apiserver.stop(graceful ? 10_000 : 0);
      },
      async startApiServer() {
        const port = Number(new URL(url).port);
        // The port was ours a moment ago; another process may take it in between, so retry a little.
        for (let attempt = 1; ; attempt++) {
          const proc = startProcess('kube-apiserver', binary, apiserverArgs(port));
          apiserver = proc;
          cluster.apiserver = proc;
          try {
            await waitUntil(async () => (await getStatus(`${url}/readyz`, cert.cert, adminToken)) === 200, proc, 'kube-apiserver to answer /readyz with 200 after a restart', 90_000);
            return;
          } catch (err) {
            await proc.stop();
            if (attempt >= 5 || !/address already in use/.test(proc.output)) throw err;
            await new Promise((r) => setTimeout(r, 1000));
          }
        }
      },
      async restartApiServer() {
        await cluster.stopApiServer();
        await cluster.startApiServer();
      },
      async serviceAccountToken(namespace, name, expirationSeconds = 3600) {
        const r = await request('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { expirationSeconds },
        });
        const token = (r.json as { status?: { token?: string } } | null)?.status?.token;
        if (r.status !== 201 || !token) throw new Error(`TokenRequest for serviceaccount ${namespace}/${name} failed with HTTP ${r.status}: ${r.body.toString()}`);
        return token;
      },
      async stop() {
        agent.destroy();
        await stopAll();
      },
    };
    return cluster;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

function parseJson(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return null;
  }
}

/** waitFor, failing at once when the process it waits on exits. */
function waitUntil(ready: () => Promise<boolean>, proc: ManagedProcess, what: string, timeoutMs: number): Promise<void> {
  const check = async () => {
    if (!proc.running()) throw new Error(`${proc.name} exited while waiting for ${what}: ${proc.describe()}`);
    return ready().catch(() => false);
  };
  return waitFor(check, what, timeoutMs, { intervalMs: 200, describe: () => proc.describe() });
}

function plainGet(url: string): Promise<string> {
  return fetch(url, { signal: AbortSignal.timeout(2000) }).then((r) => r.text());
}

function getStatus(url: string, ca: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, headers: { authorization: `Bearer ${token}` }, timeout: 2000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}
