/**
 * kas's half of the Kubernetes API proxy: the HTTP(S) server that clients (kubectl, GitLab's UI)
 * call. It authenticates each request, picks a session of the target agent (waiting a bounded time
 * for one), opens a stream whose head is the cleaned request, and streams both bodies with
 * backpressure. Upgrades (exec, attach, port-forward) switch the stream to raw bytes after the 101.
 * Every error kas makes itself is a Kubernetes Status body. agentk's ApiServerForwarder serves the
 * other end of each stream.
 */
import http from 'node:http';
import https from 'node:https';
import { finished, type Duplex } from 'node:stream';
import { TunnelError, isTunnelError } from '../../protocol/errors.js';
import { httpStatusOfTunnelCode, opensElsewhere } from '../../protocol/http-status.js';
import type { Head } from '../../protocol/frames.js';
import { decodeResponseHead, encodeRequestHead, type HeaderPair, type HttpResponseHead } from '../../protocol/http.js';
import { HandleSet } from '../../protocol/id-map.js';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import type { Session } from '../../protocol/session.js';
import { listenOn, parseListenAddress } from '../../shared/address.js';
import { kubernetesStatusBody } from '../../shared/k8s-status.js';
import { statusReply } from './status-reply.js';
import { AbsentAgents } from './absent-agents.js';
import type { Logger } from '../../shared/logger.js';
import type { ListenerTls } from '../configuration/tls-reloader.js';
import type { ProxyAuthenticator, ProxyDecision } from '../auth/types.js';
import type { KubernetesApiConfig } from './config.js';
import type { ProxyMetrics } from './metrics.js';
import type { AgentRouter, OpenedStream } from '../routing/agent-router.js';
import { isUpgradeRequest, rawConnectionTokens, rawHasImpersonationHeaders, rawHeaderValue, requestHasBody } from '../../protocol/http-rules.js';
import { forwardHeaders, forwardPath, responseHeaders } from './request-head.js';
import { answerClientError } from '../client-error.js';
import { Cancellation } from '../cancellation.js';
import { bodyTooLargeMessage, declaresBodyOver, pipeBodyWithin } from './body-limit.js';
import { pipeByTurn } from './pipe-by-turn.js';
import { answerPlainHttp } from './plain-http-guard.js';

export interface ProxyServerDeps {
  config: KubernetesApiConfig;
  /** The certificate and key (read while kas is created, then followed for rotation), or null for plain HTTP. */
  tls: ListenerTls | null;
  /** The one origin browsers may call from (GitLab's external URL), or null for no CORS. */
  corsOrigin: string | null;
  authenticator: ProxyAuthenticator;
  router: AgentRouter;
  metrics: ProxyMetrics;
  logger: Logger;
}

/** A request kas refuses itself, before anything reaches an agent. */
class Refusal {
  constructor(
    readonly status: number,
    readonly message: string,
    readonly headers: Record<string, string> = {},
  ) {}
}

interface Prepared {
  decision: ProxyDecision;
  head: Head;
  hasBody: boolean;
  upgrade: boolean;
}

/** How many sessions a bodiless request may try when a session refuses it (drain races). */
const MAX_ATTEMPTS = 3;

function statusLine(status: number): string {
  return `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Unknown'}\r\n`;
}

function headerLines(headers: readonly HeaderPair[]): string {
  return headers.map(([k, v]) => `${k}: ${v}\r\n`).join('');
}

/** The first value of query parameter `name` in a request target, or null; parses nothing when there is no query. */
function queryParam(url: string, name: string): string | null {
  const q = url.indexOf('?');
  return q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get(name);
}

function flat(headers: readonly HeaderPair[]): string[] {
  const out = new Array<string>(headers.length * 2);
  for (let i = 0; i < headers.length; i++) {
    out[2 * i] = headers[i]![0];
    out[2 * i + 1] = headers[i]![1];
  }
  return out;
}

export class KubernetesApiProxyServer {
  private readonly deps: ProxyServerDeps;
  private server: http.Server | https.Server | null = null;
  /** Requests being served: a HandleSet, not a Set (one comes and goes per request; see protocol/id-map.ts). */
  private readonly inflight = new HandleSet<Promise<void>>();
  /** Upgraded connections: the HTTP server no longer tracks them, so stop() ends them itself. */
  private readonly upgraded = new Set<Duplex>();
  /** Upgrade sockets on which an answer head was written: an unexpected failure can only cut them. */
  private readonly answeredRaw = new WeakSet<Duplex>();
  boundAddress = '';
  private readonly absent: AbsentAgents;

  constructor(deps: ProxyServerDeps) {
    this.deps = deps;
    this.absent = new AbsentAgents(deps.config.agent_wait_timeout);
  }

  async start(): Promise<string> {
    const { config } = this.deps;
    const { tls } = this.deps;
    // headers_timeout bounds slow-header clients; Node checks it every connectionsCheckingInterval.
    const checking = { connectionsCheckingInterval: Math.min(30_000, Math.max(100, config.listen.headers_timeout / 4)) };
    // A client may half-close (FIN after its request) and still read the reply: keep the socket
    // open for writing (TLS sockets close both ways by default) and let Node's HTTP layer finish the
    // response before ending it (by default it aborts the request on the client's FIN).
    const server = tls ? https.createServer({ ...tls.current, ...checking, allowHalfOpen: true }) : http.createServer(checking);
    (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    server.headersTimeout = config.listen.headers_timeout;
    server.requestTimeout = 0;
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.track(this.onRequest(req, res)));
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.track(this.onUpgrade(req, socket, head)));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket));
    if (tls) answerPlainHttp(server as https.Server, config.listen.headers_timeout);
    this.boundAddress = await listenOn(server, parseListenAddress(config.listen.address)!);
    // Rotated certificate files go into the server from now on (new connections get them).
    if (tls && server instanceof https.Server) tls.follow(server);
    this.server = server;
    return this.boundAddress;
  }

  private track(p: Promise<void>): void {
    let handle = 0;
    const tracked = p.catch((err: unknown) => this.deps.logger.error({ err }, 'proxy request failed unexpectedly')).finally(() => this.inflight.delete(handle));
    handle = this.inflight.add(tracked);
  }

  /** Stops accepting requests and waits for in-flight ones, at most `graceMs`. */
  async drain(graceMs: number): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.close();
    server.closeIdleConnections?.();
    await Promise.race([Promise.all(this.inflight.values()), new Promise((r) => setTimeout(r, graceMs).unref())]);
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    server.closeAllConnections?.();
    for (const socket of this.upgraded) socket.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }

  // ---- shared by plain requests and upgrades ----------------------------------------------

  private async prepare(req: http.IncomingMessage, upgrade: boolean): Promise<Prepared | Refusal> {
    const path = forwardPath(req.url, this.deps.config.url_path_prefix);
    if (path === null) return new Refusal(404, `the Kubernetes API proxy serves paths under ${this.deps.config.url_path_prefix}`);
    const { authenticator, logger } = this.deps;
    const raw = req.rawHeaders;
    const auth = await authenticator.authorize({ rawHeaders: raw, queryParam: (name) => queryParam(req.url!, name) });
    if (!auth.ok) {
      if (auth.status !== 401) return new Refusal(auth.status, auth.message);
      // The client learns the accepted forms, the same for every refusal (nothing about which agents
      // or tokens exist); the operator learns why. The credential itself is never logged.
      logger.info({ reason: auth.reason ?? 'refused', detail: auth.message }, 'proxy request refused: bad credentials');
      return new Refusal(401, `Unauthorized: ${authenticator.credentialForms}`, { 'Gitlab-Unauthorized': 'true' });
    }
    const { decision } = auth;
    const limit = this.deps.config.max_request_body_size;
    // The few headers kas itself reads come from the raw list (first value of each name).
    const transferEncoding = rawHeaderValue(raw, 'transfer-encoding');
    const contentLength = rawHeaderValue(raw, 'content-length');
    if (!upgrade && declaresBodyOver(transferEncoding, contentLength, limit)) return new Refusal(413, bodyTooLargeMessage(limit), { Connection: 'close' });
    if (decision.impersonate && rawHasImpersonationHeaders(raw)) {
      return new Refusal(403, 'nested impersonation is not allowed: this credential already impersonates, drop the Impersonate-* headers');
    }
    // An upgrade keeps kas's direction open for the raw bytes that follow the switch.
    const hasBody = upgrade || requestHasBody(transferEncoding, contentLength);
    const head = encodeRequestHead({ method: req.method ?? 'GET', path, headers: forwardHeaders(raw, upgrade), impersonate: decision.impersonate });
    return { decision, head, hasBody, upgrade };
  }

  /**
   * Opens the request stream on a session of the agent and waits for the reply head. Bodiless
   * requests refused by a draining session are retried on another session.
   */
  private async exchange(p: Prepared, cancel: Cancellation, writeBody: (s: TunnelStream) => void): Promise<{ stream: TunnelStream; reply: HttpResponseHead } | Refusal> {
    const { router, config, metrics } = this.deps;
    const tried = new Set<Session>();
    // An agent a request just waited for in vain is not waited for again (it is still used if it is there).
    const waitMs = this.absent.recentlyAbsent(p.decision.agentId) ? 0 : config.agent_wait_timeout;
    for (let attempt = 1; ; attempt++) {
      const waitStart = process.hrtime.bigint();
      let opened: OpenedStream | null;
      try {
        // The Cancellation itself, not an object literal with a getter for its signal: V8 puts a
        // literal's accessor pair straight into the old generation, and a dead one there kept the
        // getter's closure, and through it every object of the request, alive until a full
        // collection (bench/gc-probe.ts: 1.7 KB promoted per request, scavenges of 4-9 ms).
        opened = await router.open(p.decision.agentId, p.head, { end: !p.hasBody, timeoutMs: waitMs, cancel, tried });
      } catch (err) {
        const code = isTunnelError(err) ? err.code : 'INTERNAL';
        const status = httpStatusOfTunnelCode(code, 'open');
        if (code === 'STREAM_LIMIT') return new Refusal(status, 'too many concurrent requests to this agent');
        // No other session would take a head this size: say so at once instead of retrying.
        if (code === 'HEADER_TOO_LARGE') return new Refusal(status, `the request headers exceed the agent's limit: ${(err as Error).message}`);
        if (opensElsewhere(code) && attempt < MAX_ATTEMPTS) continue;
        return new Refusal(status, opensElsewhere(code) ? `no session of agent ${p.decision.agentId} accepts requests` : `could not open a stream to agent ${p.decision.agentId}: ${code}`);
      }
      metrics.routingWait.observe(Number(process.hrtime.bigint() - waitStart) / 1e9);
      if (cancel.aborted) {
        // The client left while routing was still waiting: the stream opened for it must not outlive it.
        opened?.stream.reset('CANCELLED', 'client went away');
        return new Refusal(499, 'client went away');
      }
      if (!opened) {
        if (waitMs === 0) return new Refusal(502, `agent ${p.decision.agentId} is not connected (a request waited ${config.agent_wait_timeout} ms for it moments ago; kas did not wait again)`);
        this.absent.record(p.decision.agentId);
        return new Refusal(502, `agent ${p.decision.agentId} is not connected (waited ${config.agent_wait_timeout} ms)`);
      }
      const { stream, via: session } = opened;
      if (p.hasBody) writeBody(stream);
      const removeHook = cancel.onCancel(() => stream.reset('CANCELLED', 'client went away'));
      try {
        const head = await replyOf(stream);
        const reply = decodeResponseHead(head);
        // 1xx is never a final answer (agentk relays only final ones); 101 only answers an upgrade.
        if (reply.status < 200 && !(p.upgrade && reply.status === 101)) throw new TunnelError('PROTOCOL_ERROR', `status ${reply.status} is not a final response to this request`);
        return { stream, reply };
      } catch (err) {
        stream.reset('PROTOCOL_ERROR', 'bad reply');
        const code = isTunnelError(err) ? err.code : 'INTERNAL';
        if (code === 'STREAM_REFUSED' && !p.hasBody && attempt < MAX_ATTEMPTS) {
          tried.add(session);
          continue;
        }
        metrics.proxyErrors.inc({ code });
        if (cancel.aborted) return new Refusal(499, 'client went away');
        if (code === 'PROTOCOL_ERROR') return new Refusal(httpStatusOfTunnelCode(code, 'reply'), 'the agent sent an invalid response head');
        return new Refusal(httpStatusOfTunnelCode(code, 'reply'), `the request failed in the tunnel to agent ${p.decision.agentId}: ${code}`);
      } finally {
        removeHook();
      }
    }
  }

  // ---- plain requests ------------------------------------------------------------------------

  /**
   * CORS for GitLab's web UI: only GitLab's own origin, with credentials; preflights are answered
   * here. Returns true when the request was answered (preflight or refused origin).
   */
  private cors(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const allowed = this.deps.corsOrigin;
    if (allowed === null) return false;
    const origin = rawHeaderValue(req.rawHeaders, 'origin');
    if (origin === undefined) return false;
    if (origin !== allowed) {
      this.refuse(res, new Refusal(403, 'this origin may not call the Kubernetes API proxy'), 'none');
      return true;
    }
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Access-Control-Allow-Credentials', 'true');
    res.setHeader('Vary', 'Origin');
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
      res.setHeader('Access-Control-Allow-Methods', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS');
      const requested = req.headers['access-control-request-headers'];
      if (requested) res.setHeader('Access-Control-Allow-Headers', requested);
      res.setHeader('Access-Control-Max-Age', '86400');
      res.writeHead(204);
      res.end();
      return true;
    }
    return false;
  }

  /**
   * Any exception while handling a request is a bug, and must not leave the client waiting: it is
   * answered with a 500 Status if nothing was written yet, else the response is cut, and counted.
   */
  private async onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      await this.serveRequest(req, res);
    } catch (err) {
      this.deps.metrics.unexpectedErrors.inc({ kind: 'request' });
      this.deps.logger.error({ err }, 'proxy request failed unexpectedly');
      if (res.headersSent || res.destroyed) res.destroy();
      else this.refuse(res, new Refusal(500, 'kas failed to handle this request (an internal error, logged by kas)', { Connection: 'close' }), 'none');
    }
  }

  private async serveRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const { metrics } = this.deps;
    if (this.cors(req, res)) return;
    const cancel = new Cancellation();
    // The client's FIN: before the answer began it is a half-close (the client sent its request and
    // waits for the reply, which it gets); once the answer is streaming it means the client is gone
    // (kubectl closing a watch), so the request is aborted at once instead of at the next write.
    const socket = req.socket;
    const onClientEnd = () => {
      if (res.headersSent && !res.writableFinished) res.destroy();
    };
    socket.on('end', onClientEnd);
    res.once('close', () => {
      socket.off('end', onClientEnd);
      if (!res.writableFinished) cancel.cancel();
    });
    const prepared = await this.prepare(req, false);
    if (prepared instanceof Refusal) return this.refuse(res, prepared, 'none');
    const limit = this.deps.config.max_request_body_size;
    let bodyOverLimit = false;
    const result = await this.exchange(prepared, cancel, (stream) => {
      req.on('error', () => stream.reset('CANCELLED', 'client request failed'));
      pipeBodyWithin(req, stream, limit, () => {
        bodyOverLimit = true;
        // A response already streaming can only be cut; otherwise the 413 below answers.
        if (res.headersSent) res.destroy();
      });
    });
    if (result instanceof Refusal) {
      if (!prepared.hasBody) req.resume();
      return this.refuse(res, bodyOverLimit ? new Refusal(413, bodyTooLargeMessage(limit), { Connection: 'close' }) : result, prepared.decision.credential);
    }
    const { stream, reply } = result;
    metrics.proxyRequests.inc({ status: `${Math.floor(reply.status / 100)}xx`, credential: prepared.decision.credential });
    res.writeHead(reply.status, flat(responseHeaders(reply.headers, false)));
    // A small answer is usually all here already (head, body and end came in one frame): it is
    // written in one go, without streaming it through.
    const whole = stream.takeWhole();
    if (whole) {
      if (whole.length === 1) {
        res.end(whole[0]);
      } else {
        res.cork();
        for (const b of whole) res.write(b);
        res.end();
      }
      return;
    }
    // The head goes out with the first body bytes when they come in the same turn (one write for a
    // small answer); a watch that stays silent still gets its head at once. (res.headersSent is
    // true as soon as writeHead stored the head, sent or not: whether a body chunk took it out is
    // tracked here.)
    let bodyStarted = false;
    stream.once('data', () => {
      bodyStarted = true;
    });
    setImmediate(() => {
      if (!bodyStarted && !res.destroyed && !res.writableEnded) res.flushHeaders();
    });
    await new Promise<void>((resolve) => {
      finished(stream, { writable: false }, (err) => {
        if (!err) return;
        // The head is out: the only way left to signal failure is to cut the response short.
        metrics.proxyErrors.inc({ code: isTunnelError(err) ? err.code : 'STREAM_ABORTED' });
        res.destroy(err);
      });
      res.on('close', () => {
        if (!res.writableFinished) stream.reset('CANCELLED', 'client went away');
        resolve();
      });
      pipeByTurn(stream, res);
    });
  }

  private refuse(res: http.ServerResponse, r: Refusal, credential: string): void {
    this.deps.metrics.proxyRequests.inc({ status: `${Math.floor(r.status / 100)}xx`, credential });
    if (r.status === 499 || res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const { contentType, body } = statusReply(res.req.headers.accept, r.status, r.message);
    res.writeHead(r.status, { 'Content-Type': contentType, 'Content-Length': body.length, ...r.headers });
    res.end(body);
  }

  // ---- upgrades ------------------------------------------------------------------------------

  /** As onRequest: an exception answers 500 if nothing was written on the socket, else cuts it. */
  private async onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    try {
      await this.serveUpgrade(req, socket, head);
    } catch (err) {
      this.deps.metrics.unexpectedErrors.inc({ kind: 'upgrade' });
      this.deps.logger.error({ err }, 'proxy upgrade failed unexpectedly');
      if (this.answeredRaw.has(socket) || socket.destroyed) socket.destroy();
      else this.refuseRaw(socket, new Refusal(500, 'kas failed to handle this request (an internal error, logged by kas)'));
    }
  }

  private async serveUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {
      /* Failures surface through 'close' below. */
    });
    // TLS server sockets are not half-open by default; an upgraded stream closes each direction on its own.
    (socket as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = true;
    this.upgraded.add(socket);
    socket.once('close', () => this.upgraded.delete(socket));
    const cancel = new Cancellation();
    socket.once('close', () => cancel.cancel());
    if (!isUpgradeRequest(rawConnectionTokens(req.rawHeaders), req.headers.upgrade)) return this.refuseRaw(socket, new Refusal(400, 'bad upgrade request'));
    const prepared = await this.prepare(req, true);
    if (prepared instanceof Refusal) return this.refuseRaw(socket, prepared);
    const result = await this.exchange(prepared, cancel, (stream) => {
      if (head.length > 0) stream.write(head);
    });
    if (result instanceof Refusal) return this.refuseRaw(socket, result);
    const { stream, reply } = result;
    this.deps.metrics.proxyRequests.inc({ status: `${Math.floor(reply.status / 100)}xx`, credential: prepared.decision.credential });
    const upgraded = reply.status === 101;
    const headers = responseHeaders(reply.headers, upgraded);
    if (!upgraded) headers.push(['Connection', 'close']);
    this.answeredRaw.add(socket);
    socket.write(statusLine(reply.status) + headerLines(headers) + '\r\n');
    finished(stream, { writable: false }, (err) => {
      if (err) socket.destroy();
    });
    socket.once('close', () => {
      if (!stream.destroyed) stream.reset('CANCELLED', 'client went away');
    });
    // Raw bytes both ways; each direction ends on its own.
    pipeByTurn(stream, socket);
    if (upgraded) socket.pipe(stream);
    else stream.end();
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
  }

  private refuseRaw(socket: Duplex, r: Refusal): void {
    this.deps.metrics.proxyRequests.inc({ status: `${Math.floor(r.status / 100)}xx`, credential: 'none' });
    if (r.status === 499 || socket.destroyed) {
      socket.destroy();
      return;
    }
    this.answeredRaw.add(socket);
    const body = kubernetesStatusBody(r.status, r.message);
    const extra = Object.entries(r.headers).filter(([k]) => k.toLowerCase() !== 'connection').map(([k, v]) => `${k}: ${v}\r\n`).join('');
    socket.end(`${statusLine(r.status)}Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n${extra}\r\n${body.toString()}`);
  }
}
