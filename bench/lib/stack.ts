/**
 * The processes of the benchmark's paths, each started as its own program on loopback:
 * the upstream, the two relays of the ceiling, kas + agentk (ws:// or wss://), and an OpenSSH
 * reverse tunnel (a private sshd plus `ssh -R`).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { generateSelfSignedCertificate } from '../../src/shared/tls-cert.js';
import { descendants, freePort, run, sleep, startProcess, stopProcess, waitForListeners, waitForPort, type Proc } from './proc.js';
import { NODE_FLAGS } from '../../src/shared/node-flags.js';

/** The repository root (this file runs from dist/bench/lib/). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const DIST = join(ROOT, 'dist');

export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(text: string): HostPort {
  const colon = text.lastIndexOf(':');
  return { host: text.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(text.slice(colon + 1)) };
}

/** A process of a path, named for the tables (kas, agentk, relay1, sshd, ssh, ...). */
export interface Member {
  role: string;
  pid: number;
}

/** A way from the client to the upstream. */
export interface Path {
  name: string;
  /** Where the client connects. */
  entry: HostPort;
  /** The processes in the path besides the client and the upstream (measured for memory and CPU). */
  members(): Member[];
  stop(): Promise<void>;
}

export function baseUrl(p: Path): string {
  return `http://${p.entry.host}:${p.entry.port}`;
}

/** Files shared by every kas and agentk of a run: tokens, a certificate, the upstream's kubeconfig. */
export interface Secrets {
  dir: string;
  agentTokenFile: string;
  proxyTokenFile: string;
  proxyToken: string;
  certFile: string;
  keyFile: string;
}

export async function makeSecrets(dir: string): Promise<Secrets> {
  mkdirSync(dir, { recursive: true });
  const agentToken = `bench-agent-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
  const proxyToken = `bench-proxy-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
  const s: Secrets = {
    dir,
    agentTokenFile: join(dir, 'agent.token'),
    proxyTokenFile: join(dir, 'proxy.token'),
    proxyToken,
    certFile: join(dir, 'kas-cert.pem'),
    keyFile: join(dir, 'kas-key.pem'),
  };
  writeFileSync(s.agentTokenFile, `${agentToken}\n`, { mode: 0o600 });
  writeFileSync(s.proxyTokenFile, `${proxyToken}\n`, { mode: 0o600 });
  const pair = await generateSelfSignedCertificate();
  writeFileSync(s.certFile, pair.cert);
  writeFileSync(s.keyFile, pair.key, { mode: 0o600 });
  return s;
}

/** The proxy credential header every path gets (the upstream ignores it). */
export function authHeaders(s: Secrets): Record<string, string> {
  return { Authorization: `Bearer pat:1:${s.proxyToken}` };
}

/** What every small bench tool starts from: a scratch directory, secrets, the upstream and a kubeconfig for it. */
export interface BenchBase {
  /** The scratch directory (the caller removes it). */
  tmp: string;
  logDir: string;
  secrets: Secrets;
  /** The proxy token's Authorization header. */
  headers: Record<string, string>;
  upstream: { proc: Proc; address: HostPort };
  /** A kubeconfig pointing agentk at the upstream. */
  kubeconfig: string;
}

/** Makes a scratch directory (`prefix` in the OS temp directory), the secrets, and starts the upstream. */
export async function startBenchBase(prefix: string): Promise<BenchBase> {
  const tmp = mkdtempSync(join(os.tmpdir(), prefix));
  const logDir = join(tmp, 'logs');
  mkdirSync(logDir);
  const secrets = await makeSecrets(join(tmp, 'secrets'));
  const upstream = await startUpstream(logDir);
  return { tmp, logDir, secrets, headers: authHeaders(secrets), upstream, kubeconfig: writeKubeconfig(tmp, upstream.address) };
}

// ---- upstream and relays ---------------------------------------------------------------------

export async function startUpstream(logDir: string, options: { netns?: string; listen?: string } = {}): Promise<{ proc: Proc; address: HostPort }> {
  const proc = startProcess('upstream', process.execPath, [join(DIST, 'bench/upstream.js'), '--listen', options.listen ?? '127.0.0.1:0'], { logDir, netns: options.netns });
  const { upstream } = await waitForListeners(proc, ['upstream']);
  return { proc, address: parseHostPort(upstream!) };
}

export async function startRelay(logDir: string, name: string, target: HostPort, delayMs = 0): Promise<{ proc: Proc; address: HostPort }> {
  const args = [join(DIST, 'bench/relay.js'), '--name', name, '--listen', '127.0.0.1:0', '--target', `${target.host}:${target.port}`];
  if (delayMs > 0) args.push('--delay-ms', String(delayMs));
  const proc = startProcess(name, process.execPath, args, { logDir });
  const found = await waitForListeners(proc, [name]);
  return { proc, address: parseHostPort(found[name]!) };
}

export function directPath(upstream: HostPort): Path {
  return { name: 'direct', entry: upstream, members: () => [], stop: async () => undefined };
}

/** client → relay1 → relay2 → upstream. */
export async function ceilingPath(logDir: string, upstream: HostPort): Promise<Path> {
  const r2 = await startRelay(logDir, 'relay2', upstream);
  const r1 = await startRelay(logDir, 'relay1', r2.address);
  return {
    name: 'ceiling',
    entry: r1.address,
    members: () => [
      { role: 'relay1', pid: r1.proc.pid },
      { role: 'relay2', pid: r2.proc.pid },
    ],
    stop: async () => {
      await stopProcess(r1.proc);
      await stopProcess(r2.proc);
    },
  };
}

// ---- kas and agentk --------------------------------------------------------------------------

export interface KasOptions {
  secrets: Secrets;
  tls: boolean;
  /** Agent listener address (default 127.0.0.1:0). */
  agentListen?: string;
  /** Overrides of agent.tunnel keys. */
  tunnel?: Record<string, unknown>;
  /** Overrides of agent.listen keys. */
  agentListenExtra?: Record<string, unknown>;
  logLevel?: string;
  nodeArgs?: string[];
  nofile?: number;
  name?: string;
  /** The compiled tree to run kas from (default: this repository's dist/), for A/B runs of two builds. */
  dist?: string;
  /** HTTPS on the Kubernetes API proxy too (with the run's certificate): kubectl sends no token over plain HTTP. */
  proxyTls?: boolean;
}

/** The keys the current kas knows, from kas.example.yaml (a test keeps it equal to the defaults). */
function exampleConfig(): Record<string, unknown> {
  try {
    return (parseYaml(readFileSync(join(ROOT, 'kas.example.yaml'), 'utf8')) ?? {}) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/** A standalone kas configuration with every listener on 127.0.0.1:0 (or the given agent address). */
export function kasConfigText(o: KasOptions): string {
  const example = exampleConfig();
  const agentListen: Record<string, unknown> = { address: o.agentListen ?? '127.0.0.1:0', ...o.agentListenExtra };
  if (o.tls) Object.assign(agentListen, { certificate_file: o.secrets.certFile, key_file: o.secrets.keyFile });
  const config: Record<string, unknown> = {
    agent: {
      listen: agentListen,
      ...(o.tunnel ? { tunnel: o.tunnel } : {}),
      kubernetes_api: { listen: { address: '127.0.0.1:0', ...(o.proxyTls ? { certificate_file: o.secrets.certFile, key_file: o.secrets.keyFile } : {}) } },
    },
    observability: { listen: { address: '127.0.0.1:0' }, logging: { level: o.logLevel ?? 'info' } },
    standalone: {
      agents: [{ id: 1, name: 'bench', token_file: o.secrets.agentTokenFile }],
      proxy_tokens: [{ token_file: o.secrets.proxyTokenFile, agents: [1] }],
    },
  };
  // Listeners newer versions of kas have (the API for GitLab, the private API): off the default ports.
  for (const key of ['api', 'private_api']) {
    const section = example[key] as { listen?: unknown } | undefined;
    if (section && typeof section === 'object' && section.listen) config[key] = { listen: { address: '127.0.0.1:0' } };
  }
  return `# Made by the benchmark.\n${stringifyYaml(config)}`;
}

export interface Kas {
  proc: Proc;
  configFile: string;
  agent: HostPort;
  proxy: HostPort;
  observability: HostPort;
}

/**
 * Starts kas and waits for its listeners. `onAgentListening` hears the moment the agent listener is
 * up (before the others, which a crowd of reconnecting agents may delay).
 */
export async function startKas(logDir: string, o: KasOptions, configFile = join(o.secrets.dir, `kas-${Date.now()}-${Math.random().toString(36).slice(2, 6)}.yaml`), onAgentListening?: () => void): Promise<Kas> {
  writeFileSync(configFile, kasConfigText(o));
  const proc = startProcess(o.name ?? 'kas', process.execPath, [...NODE_FLAGS, ...(o.nodeArgs ?? []), join(o.dist ?? DIST, 'src/broker/main.js'), '--config', configFile], { logDir, nofile: o.nofile });
  if (onAgentListening) {
    await waitForListeners(proc, ['agent'], 30_000, 10);
    onAgentListening();
  }
  const found = await waitForListeners(proc, ['agent', 'kubernetes_api', 'observability'], 60_000);
  return { proc, configFile, agent: parseHostPort(found.agent!), proxy: parseHostPort(found.kubernetes_api!), observability: parseHostPort(found.observability!) };
}

export function writeKubeconfig(dir: string, upstream: HostPort): string {
  const file = join(dir, `kubeconfig-${upstream.port}.yaml`);
  writeFileSync(
    file,
    stringifyYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'bench', cluster: { server: `http://${upstream.host}:${upstream.port}` } }],
      users: [{ name: 'bench', user: { token: 'bench-upstream-token' } }],
      contexts: [{ name: 'bench', context: { cluster: 'bench', user: 'bench' } }],
      'current-context': 'bench',
    }),
  );
  return file;
}

export interface AgentkOptions {
  secrets: Secrets;
  tls: boolean;
  kasAgent: HostPort;
  kubeconfig: string;
  nodeArgs?: string[];
  netns?: string;
  connections?: number;
  /** The compiled tree to run agentk from (default: this repository's dist/). */
  dist?: string;
}

export async function startAgentk(logDir: string, o: AgentkOptions): Promise<{ proc: Proc; observability: HostPort }> {
  const args = [
    ...NODE_FLAGS,
    ...(o.nodeArgs ?? []),
    join(o.dist ?? DIST, 'src/agent/main.js'),
    '--kas-address',
    `${o.tls ? 'wss' : 'ws'}://${o.kasAgent.host}:${o.kasAgent.port}/`,
    '--token-file',
    o.secrets.agentTokenFile,
    '--kubeconfig',
    o.kubeconfig,
    '--observability-listen-address',
    '127.0.0.1:0',
    '--kas-connections',
    String(o.connections ?? 1),
  ];
  if (o.tls) args.push('--kas-ca-cert-file', o.secrets.certFile);
  const proc = startProcess('agentk', process.execPath, args, { logDir, netns: o.netns });
  const found = await waitForListeners(proc, ['observability']);
  return { proc, observability: parseHostPort(found.observability!) };
}

/** Resolves once GET /small through `entry` answers 200 (the whole path is up). */
export async function waitForPath(entry: HostPort, headers: Record<string, string>, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = http.get({ host: entry.host, port: entry.port, path: '/small', headers, agent: false, timeout: 2000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', (err) => {
        last = err.message;
        resolve(0);
      });
    });
    if (status === 200) return;
    if (status) last = `HTTP ${status}`;
    if (!alive()) throw new Error(`a process of the path exited (${last})`);
    if (Date.now() > deadline) throw new Error(`the path through ${entry.host}:${entry.port} is not up after ${timeoutMs} ms (${last})`);
    await sleep(100);
  }
}

export interface OursPath extends Path {
  kas: Kas;
  agentk: Proc;
  agentkObservability: HostPort;
}

/** client → kas (proxy listener, plain HTTP) → tunnel over ws:// or wss:// → agentk → upstream. */
export async function oursPath(logDir: string, secrets: Secrets, upstream: HostPort, tls: boolean, extra: { kasNodeArgs?: string[]; agentNodeArgs?: string[]; tunnel?: Record<string, unknown>; name?: string } = {}): Promise<OursPath> {
  const kas = await startKas(logDir, { secrets, tls, nodeArgs: extra.kasNodeArgs, tunnel: extra.tunnel });
  let agentk: { proc: Proc; observability: HostPort } | null = null;
  try {
    agentk = await startAgentk(logDir, { secrets, tls, kasAgent: kas.agent, kubeconfig: writeKubeconfig(secrets.dir, upstream), nodeArgs: extra.agentNodeArgs });
    const a = agentk;
    await waitForPath(kas.proxy, authHeaders(secrets), 20_000, () => kas.proc.alive() && a.proc.alive());
  } catch (err) {
    if (agentk) await stopProcess(agentk.proc);
    await stopProcess(kas.proc);
    throw err;
  }
  const a = agentk;
  return {
    name: extra.name ?? (tls ? 'ours-wss' : 'ours-ws'),
    entry: kas.proxy,
    kas,
    agentk: a.proc,
    agentkObservability: a.observability,
    members: () => [
      { role: 'kas', pid: kas.proc.pid },
      { role: 'agentk', pid: a.proc.pid },
    ],
    stop: async () => {
      await stopProcess(a.proc);
      await stopProcess(kas.proc);
    },
  };
}

// ---- OpenSSH ---------------------------------------------------------------------------------

export interface Sshd {
  proc: Proc;
  port: number;
  dir: string;
  clientKey: string;
}

/** A private sshd on 127.0.0.1 with its own host key and an authorized key made here. Throws with the reason when it cannot run. */
export async function startSshd(logDir: string, dir: string): Promise<Sshd> {
  const sshd = ['/usr/sbin/sshd', '/usr/bin/sshd'].find((p) => existsSync(p));
  if (!sshd) throw new Error('sshd is not installed (apt-get install -y openssh-server openssh-client)');
  const keygen = await run('sh', ['-c', 'command -v ssh-keygen && command -v ssh']);
  if (keygen.code !== 0) throw new Error('ssh or ssh-keygen is not installed (apt-get install -y openssh-client)');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hostKey = join(dir, 'host_ed25519');
  const clientKey = join(dir, 'client_ed25519');
  for (const key of [hostKey, clientKey]) {
    if (existsSync(key)) continue;
    const r = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kas-bench', '-f', key]);
    if (r.code !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.trim()}`);
  }
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`), { mode: 0o600 });
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PidFile none',
      'UsePAM no',
      'StrictModes no',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'AllowTcpForwarding yes',
      'GatewayPorts no',
      'UseDNS no',
      'PrintMotd no',
      'MaxStartups 100:30:200',
      'Ciphers aes128-gcm@openssh.com,chacha20-poly1305@openssh.com',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  // sshd refuses to start without its privilege separation directory (made by the package's service, which we do not run).
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const test = await run(sshd, ['-t', '-f', config]);
  if (test.code !== 0) throw new Error(`sshd -t refused the configuration: ${(test.stderr || test.stdout).trim()}`);
  const proc = startProcess('sshd', sshd, ['-D', '-e', '-f', config], { logDir });
  await waitForPort('127.0.0.1', port, 10_000, () => proc.alive());
  return { proc, port, dir, clientKey };
}

/** `ssh -N -R <port>:127.0.0.1:<upstream>` through the private sshd: the peer's reverse tunnel. */
export async function sshPath(logDir: string, sshd: Sshd, upstream: HostPort, name = 'ssh'): Promise<Path> {
  const before = new Set(descendants(sshd.proc.pid));
  const remotePort = await freePort();
  const user = os.userInfo().username;
  const proc = startProcess(
    'ssh',
    'ssh',
    [
      '-N',
      '-T',
      '-R',
      `127.0.0.1:${remotePort}:${upstream.host}:${upstream.port}`,
      '-p',
      String(sshd.port),
      '-i',
      sshd.clientKey,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'Ciphers=aes128-gcm@openssh.com',
      '-o',
      'Compression=no',
      '-o',
      'ExitOnForwardFailure=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      'LogLevel=ERROR',
      `${user}@127.0.0.1`,
    ],
    { logDir },
  );
  try {
    await waitForPort('127.0.0.1', remotePort, 15_000, () => proc.alive());
  } catch (err) {
    await stopProcess(proc);
    throw new Error(`ssh -R did not come up: ${(err as Error).message}; ${readFileSync(proc.logFile, 'utf8').trim()}`, { cause: err });
  }
  await sleep(200);
  const mine = descendants(sshd.proc.pid).filter((p) => !before.has(p));
  return {
    name,
    entry: { host: '127.0.0.1', port: remotePort },
    members: () => [...mine.map((pid) => ({ role: 'sshd', pid })), { role: 'ssh', pid: proc.pid }],
    stop: () => stopProcess(proc),
  };
}
