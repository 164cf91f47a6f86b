/**
 * The one upstream agentk talks to: its own cluster's API server. The configuration comes from a
 * kubeconfig and context (`--kubeconfig`, KUBECONFIG or ~/.kube/config: kubeconfig.ts has the
 * rules) or from the in-cluster service account (KubeConfig.loadFromCluster); requests go out
 * with the agent's own credentials, through node:http(s) with one keep-alive Agent, or, for the
 * proxy's plain requests (the hot path), through an undici Pool (`dispatcher()`), which spends about
 * half node:http's CPU per request. Token files
 * (the projected service account token) are re-read so a rotated token is picked up; a CA file
 * (the service account's ca.crt, a kubeconfig's certificate-authority) is followed so new
 * connections trust a rotated CA.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { isIPv6 } from 'node:net';
import { delimiter } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { Pool } from 'undici';
import type { FileReloader } from '../../shared/file-reloader.js';
import type { Logger } from '../../shared/logger.js';
import { followCaFile } from '../ca-file.js';
import { AgentConfigError } from '../config-error.js';
import type { AgentMetrics } from '../observability/metrics.js';
import { inClusterServer, kubeconfigSource, loadKubeconfigSource } from './kubeconfig.js';

export interface ApiServerTls {
  ca?: Buffer;
  /** The file `ca` was read from (in-cluster ca.crt, a kubeconfig's certificate-authority): followed for rotation. */
  caFile?: string;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized: boolean;
  servername?: string;
}

/** How agentk authenticates to its API server. */
export type ApiServerAuth =
  | { kind: 'none' }
  | { kind: 'token'; token: string }
  /** A file holding a bearer token, re-read at most every `tokenRefreshMs` (the projected service account token). */
  | { kind: 'token-file'; path: string }
  | { kind: 'basic'; username: string; password: string }
  /** Any other kubeconfig mechanism (exec plugins, auth providers): the client library applies it. */
  | { kind: 'kubeconfig'; kubeConfig: KubeConfig };

export interface ApiServerConfig {
  /** Base URL; a path in it (a proxy's prefix) is kept in front of every request path. */
  url: URL;
  tls: ApiServerTls;
  auth: ApiServerAuth;
  /** Where the configuration came from, for logs: "in-cluster" or "kubeconfig <files> [(from <source>)] context <name>". */
  source: string;
}

/**
 * Loads the API server configuration from the kubeconfig that `--kubeconfig`, KUBECONFIG or
 * ~/.kube/config names, or from the in-cluster service account (the order is kubeconfigSource's),
 * with `context` (else the current context) when a kubeconfig is used. Throws AgentConfigError
 * naming the flag or the source at fault.
 */
export function loadApiServerConfig(options: { kubeconfig?: string; context?: string; env?: NodeJS.ProcessEnv }): ApiServerConfig {
  const env = options.env ?? process.env;
  const from = kubeconfigSource(options.kubeconfig, env);
  let kc: KubeConfig;
  let source: string;
  let rawUserTokenFile: string | undefined;
  if (from) {
    const loaded = loadKubeconfigSource(from);
    kc = loaded.kubeConfig;
    const where = from.key === '--kubeconfig' ? loaded.files.join(delimiter) : `${loaded.files.join(delimiter)} (from ${from.key})`;
    if (options.context !== undefined) {
      if (!kc.getContextObject(options.context)) {
        const known = kc.getContexts().map((c) => c.name);
        throw new AgentConfigError('--context', `no context ${JSON.stringify(options.context)} in ${where} (it has ${known.length ? known.join(', ') : 'none'})`);
      }
      kc.setCurrentContext(options.context);
    }
    const current = kc.getContextObject(kc.getCurrentContext());
    if (!current) throw new AgentConfigError('--context', `${where} has no current context; name one with --context`);
    source = `kubeconfig ${where} context ${current.name}`;
    rawUserTokenFile = loaded.tokenFiles.get(current.user);
  } else {
    if (options.context !== undefined) {
      throw new AgentConfigError('--context', 'needs --kubeconfig, KUBECONFIG or ~/.kube/config: the in-cluster service account has no contexts');
    }
    kc = new KubeConfig();
    kc.loadFromCluster();
    // loadFromCluster reads process.env; the address must come from the environment agentk was given.
    kc.clusters = kc.clusters.map((c) => ({ ...c, server: inClusterServer(env) }));
    source = 'in-cluster';
  }
  const key = from ? from.key : 'in-cluster service account';
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new AgentConfigError('--context', `the context ${JSON.stringify(kc.getCurrentContext())} names no cluster`);
  let url: URL;
  try {
    url = new URL(cluster.server);
  } catch {
    throw new AgentConfigError(from ? from.key : 'KUBERNETES_SERVICE_HOST', `the API server address ${JSON.stringify(cluster.server)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new AgentConfigError(key, `the API server address must be http:// or https://, got ${JSON.stringify(cluster.server)}`);
  }
  const user = kc.getCurrentUser();
  const tls: ApiServerTls = { rejectUnauthorized: !cluster.skipTLSVerify };
  const ca = readPem(key, 'CA certificate', cluster.caFile, cluster.caData);
  if (ca) tls.ca = ca;
  if (ca && cluster.caFile) tls.caFile = cluster.caFile;
  if (cluster.tlsServerName) tls.servername = cluster.tlsServerName;
  const cert = readPem(key, 'client certificate', user?.certFile, user?.certData);
  const clientKey = readPem(key, 'client key', user?.keyFile, user?.keyData);
  if (cert) tls.cert = cert;
  if (clientKey) tls.key = clientKey;

  let auth: ApiServerAuth = { kind: 'none' };
  const providerTokenFile = (user?.authProvider as { config?: { tokenFile?: unknown } } | undefined)?.config?.tokenFile;
  if (typeof providerTokenFile === 'string' && providerTokenFile !== '') {
    auth = { kind: 'token-file', path: providerTokenFile };
  } else if (rawUserTokenFile) {
    auth = { kind: 'token-file', path: rawUserTokenFile };
  } else if (user?.token) {
    auth = { kind: 'token', token: user.token.trim() };
  } else if (user?.username) {
    auth = { kind: 'basic', username: user.username, password: user.password ?? '' };
  } else if (user?.exec || user?.authProvider) {
    auth = { kind: 'kubeconfig', kubeConfig: kc };
  }
  return { url, tls, auth, source };
}

function readPem(key: string, what: string, file: string | undefined | null, data: string | undefined | null): Buffer | undefined {
  try {
    if (file) return readFileSync(file);
    if (data) return Buffer.from(data, 'base64');
  } catch (err) {
    throw new AgentConfigError(key, `cannot read the ${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
  return undefined;
}

/**
 * The Authorization header of agentk's requests. Token files are read at most every
 * `refreshMs` (concurrent callers share one read); a failed re-read keeps the last good token.
 */
export class ApiServerCredentials {
  private readonly auth: ApiServerAuth;
  private readonly refreshMs: number;
  private readonly logger: Logger;
  private readonly now: () => number;
  private cached: { value: string | null; readAt: number } | null = null;
  /** The header of a fixed credential (token, basic), made once. */
  private fixed: string | null = null;
  private reading: Promise<string | null> | null = null;

  constructor(auth: ApiServerAuth, options: { refreshMs?: number; logger: Logger; now?: () => number }) {
    this.auth = auth;
    this.refreshMs = options.refreshMs ?? 60_000;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  /** The header value, or null when the agent sends no credentials. */
  async authorization(): Promise<string | null> {
    const auth = this.auth;
    switch (auth.kind) {
      case 'none':
      case 'token':
      case 'basic':
        return this.current() ?? null;
      case 'token-file':
        return this.tokenFromFile(auth.path);
      case 'kubeconfig': {
        const opts: https.RequestOptions = { headers: {} };
        await auth.kubeConfig.applyToHTTPSOptions(opts);
        const value = (opts.headers as Record<string, unknown>).Authorization;
        return typeof value === 'string' ? value : null;
      }
    }
  }

  /**
   * The header value when it is at hand without waiting: a fixed credential, or a token file read
   * less than the refresh interval ago (null: no credentials). undefined when `authorization()`
   * must be awaited (a file to re-read, a kubeconfig mechanism). Requests take this path first, so
   * the usual one costs no wait.
   */
  current(): string | null | undefined {
    const auth = this.auth;
    switch (auth.kind) {
      case 'none':
        return null;
      case 'token':
        return (this.fixed ??= `Bearer ${auth.token}`);
      case 'basic':
        return (this.fixed ??= `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`);
      case 'token-file':
        return this.cached && this.now() - this.cached.readAt < this.refreshMs ? this.cached.value : undefined;
      case 'kubeconfig':
        return undefined;
    }
  }

  private async tokenFromFile(path: string): Promise<string | null> {
    if (this.cached && this.now() - this.cached.readAt < this.refreshMs) return this.cached.value;
    this.reading ??= (async () => {
      try {
        const token = (await readFile(path, 'utf8')).trim();
        this.cached = { value: token === '' ? null : `Bearer ${token}`, readAt: this.now() };
      } catch (err) {
        this.logger.warn({ err, path }, 'cannot read the API server token file; keeping the last token');
        this.cached = { value: this.cached?.value ?? null, readAt: this.now() };
      } finally {
        this.reading = null;
      }
      return this.cached.value;
    })();
    return this.reading;
  }
}

/** A request's path on the API server and its flat header list, credentials included. */
export interface PreparedRequest {
  path: string;
  headers: string[];
}

/**
 * Makes requests to the API server. Owns one keep-alive Agent; `close()` destroys its sockets.
 * Safe to use from any number of concurrent requests.
 */
export class ApiServerClient {
  readonly url: URL;
  private readonly basePath: string;
  private readonly agent: http.Agent;
  private readonly secure: boolean;
  private readonly credentials: ApiServerCredentials;
  /**
   * The CA to trust, passed with each request rather than to the Agent: the Agent pools connections
   * by their TLS options, so after a rotation new requests open connections with the new CA while
   * live ones (watches) go on. Kept as a string: the Agent appends it to its pool key per request.
   */
  private ca: { pem: Buffer; text: string } | undefined;
  private readonly caFile: FileReloader<Buffer> | null;
  /** The parts of every request's options that never change (worked out once, not per request). */
  private readonly target: Pick<http.RequestOptions, 'protocol' | 'hostname' | 'family' | 'port'>;
  private readonly tls: ApiServerTls;
  /** The undici pool of `dispatcher()` and the CA it was made with (a new pool after a rotation). */
  private pool: { pool: Pool; ca: Buffer | undefined } | null = null;
  private closed = false;

  constructor(config: ApiServerConfig, options: { logger: Logger; tokenRefreshMs?: number; metrics?: AgentMetrics; caPollMs?: number }) {
    this.url = config.url;
    this.basePath = config.url.pathname.replace(/\/+$/, '');
    this.secure = config.url.protocol === 'https:';
    const hostname = config.url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.target = {
      protocol: config.url.protocol,
      hostname,
      family: isIPv6(hostname) ? 6 : undefined,
      port: config.url.port || (this.secure ? 443 : 80),
    };
    const tls = config.tls;
    this.tls = tls;
    this.agent = this.secure
      ? new https.Agent({ keepAlive: true, cert: tls.cert, key: tls.key, rejectUnauthorized: tls.rejectUnauthorized, servername: tls.servername })
      : new http.Agent({ keepAlive: true });
    this.ca = this.secure && tls.ca ? { pem: tls.ca, text: tls.ca.toString('latin1') } : undefined;
    this.caFile =
      this.secure && tls.ca && tls.caFile && options.metrics
        ? followCaFile({ file: 'api_server_ca', path: tls.caFile, source: `${config.source} certificate authority`, initial: tls.ca, metrics: options.metrics, logger: options.logger, pollMs: options.caPollMs })
        : null;
    this.caFile?.start();
    this.credentials = new ApiServerCredentials(config.auth, { logger: options.logger, refreshMs: options.tokenRefreshMs });
  }

  /**
   * Request options for `path` (origin-form, already validated to start with a single "/"): always
   * this API server's scheme, host and port, the base path in front, the agent's own credentials.
   * `headers` are the pairs to send besides Host and Authorization.
   */
  async requestOptions(method: string, path: string, headers: readonly string[]): Promise<http.RequestOptions> {
    const target = await this.prepare(path, headers);
    const t = this.target;
    return {
      ...(this.secure && { ca: this.currentCa() }),
      protocol: t.protocol,
      hostname: t.hostname,
      family: t.family,
      port: t.port,
      method,
      path: target.path,
      headers: target.headers as unknown as http.OutgoingHttpHeaders,
      agent: this.agent,
      setHost: false,
    };
  }

  /**
   * The path and flat header list of a request to `path` (origin-form: refused otherwise): the base
   * path in front, Host, `headers`, and the agent's own Authorization.
   */
  async prepare(path: string, headers: readonly string[]): Promise<PreparedRequest> {
    return this.prepareNow(path, headers) ?? this.withAuthorization(path, headers, await this.credentials.authorization());
  }

  /**
   * What `prepare()` gives, without waiting, when the agent's credential is at hand (it usually is:
   * see ApiServerCredentials.current); null when `prepare()` must be awaited. Throws as it does.
   */
  prepareNow(path: string, headers: readonly string[]): PreparedRequest | null {
    if (!path.startsWith('/') || path.startsWith('//')) throw new Error(`refusing a request path that is not origin-form: ${JSON.stringify(path)}`);
    const authorization = this.credentials.current();
    return authorization === undefined ? null : this.withAuthorization(path, headers, authorization);
  }

  private withAuthorization(path: string, headers: readonly string[], authorization: string | null): PreparedRequest {
    const flat = ['Host', this.url.host, ...headers];
    if (authorization) flat.push('Authorization', authorization);
    return { path: this.basePath + path, headers: flat };
  }

  /**
   * The undici pool for requests without an upgrade, Expect or streamed body (prepared with
   * `prepare()`). No header or body timeout, as with node:http: a watch may be quiet for long. After
   * the CA file changed, a new pool is made for new requests; the old one closes once its requests
   * (watches included) have ended.
   */
  dispatcher(): Pool {
    const ca = this.secure ? (this.caFile?.current ?? this.tls.ca) : undefined;
    const current = this.pool;
    if (current && current.ca === ca) return current.pool;
    const t = this.tls;
    const pool = new Pool(`${this.target.protocol}//${this.url.host}`, {
      headersTimeout: 0,
      bodyTimeout: 0,
      keepAliveTimeout: 30_000,
      ...(this.secure && { connect: { ca, cert: t.cert, key: t.key, rejectUnauthorized: t.rejectUnauthorized, servername: t.servername } }),
    });
    if (current) void current.pool.close().catch(() => undefined);
    this.pool = { pool, ca };
    if (this.closed) void pool.destroy().catch(() => undefined);
    return pool;
  }

  private currentCa(): string | undefined {
    const pem = this.caFile?.current;
    if (pem && pem !== this.ca?.pem) this.ca = { pem, text: pem.toString('latin1') };
    return this.ca?.text;
  }

  /** Starts a request; the caller writes the body and handles every event. Throws on invalid headers. */
  request(options: http.RequestOptions): http.ClientRequest {
    return this.secure ? https.request(options) : http.request(options);
  }

  /** The API server's gitVersion (GET /version), or '' when it cannot be had within `timeoutMs`. */
  async version(timeoutMs = 5000): Promise<string> {
    try {
      const options = await this.requestOptions('GET', '/version', ['Accept', 'application/json']);
      return await new Promise<string>((resolve) => {
        const req = this.request({ ...options, timeout: timeoutMs });
        req.on('timeout', () => req.destroy(new Error('timed out')));
        req.on('error', () => resolve(''));
        req.on('response', (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.byteLength;
            if (size > 64 * 1024) req.destroy(new Error('/version answer too large'));
            else chunks.push(c);
          });
          res.on('error', () => resolve(''));
          res.on('end', () => {
            try {
              const v = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { gitVersion?: unknown }).gitVersion;
              resolve(res.statusCode === 200 && typeof v === 'string' ? v : '');
            } catch {
              resolve('');
            }
          });
        });
        req.end();
      });
    } catch {
      return '';
    }
  }

  close(): void {
    this.closed = true;
    this.caFile?.close();
    this.agent.destroy();
    if (this.pool) void this.pool.pool.destroy().catch(() => undefined);
  }
}
