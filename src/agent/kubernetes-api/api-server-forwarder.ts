/**
 * agentk's half of the Kubernetes API proxy: serves the `http` streams kas opens (kas's
 * KubernetesApiProxyServer is the other end), forwarding each as one request to this cluster's API
 * server. The request head is validated, the client's credentials and hop-by-hop headers are
 * dropped, kas's impersonation is applied, and the request goes to the API server and nowhere else.
 * Bodies stream both ways with backpressure, never buffered whole. After a 101 the stream carries raw bytes both ways
 * (exec, attach, port-forward), each direction ending on its own.
 *
 * Two upstream clients: a request whose body is whole (or absent), without Upgrade or Expect, the
 * hot path (gets, lists, watches, small writes), goes through the API server client's undici pool
 * with this exchange as the dispatch handler; uploads of unknown length, upgrades and Expect go
 * through node:http (undici refuses Upgrade and Expect headers on a plain dispatch).
 *
 * Whether the request has a body is read from the wire, never from the method: an OPEN that ended
 * the stream carried the whole body (usually none); otherwise the body is whatever kas sends.
 *
 * Ownership: the forwarder owns the upstream request and socket of each stream and destroys them
 * when the stream fails or closes early, and on `close()`. The tunnel stream belongs to the
 * session; the forwarder only replies, writes, ends or resets it.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import { decodeRequestHead, encodeResponseHead, type HeaderPair, type HttpRequestHead } from '../../protocol/http.js';
import { HandleSet } from '../../protocol/id-map.js';
import { connectionTokens, hasImpersonationHeaders, headerValue, isUpgradeRequest } from '../../protocol/http-rules.js';
import type { TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentMetrics, StreamOutcome } from '../observability/metrics.js';
import type { ApiServerClient } from './api-server.js';
import { flatten, responseHeaders, upstreamRequestHeaders } from './headers.js';
import { statusReply } from './status.js';

/** Path segments "." and "..", also percent-encoded: Kubernetes names never are one. */
const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|$)/i;

export class ApiServerForwarder {
  private readonly client: ApiServerClient;
  private readonly metrics: AgentMetrics;
  /** Requests in flight: a HandleSet, not a Set (one comes and goes per request; see protocol/id-map.ts). */
  private readonly active = new HandleSet<Exchange>();

  constructor(client: ApiServerClient, metrics: AgentMetrics) {
    this.client = client;
    this.metrics = metrics;
  }

  /** Requests in flight. */
  get activeCount(): number {
    return this.active.size;
  }

  /** Serves one `http` stream. Never throws; every failure becomes a Status reply or a coded reset. */
  handle(stream: TunnelStream, logger: Logger): void {
    let handle = 0;
    const exchange = new Exchange(stream, this.client, this.metrics, logger, () => this.active.delete(handle));
    handle = this.active.add(exchange);
    exchange.run().catch((err: unknown) => {
      exchange.log.error({ err }, 'unexpected failure serving a Kubernetes API request');
      exchange.abort('INTERNAL');
    });
  }

  /**
   * Bytes of the API server's responses that agentk holds: read from the API server (or waiting in
   * its socket's buffer) and not yet handed to the tunnel's transport. Bounded per stream by the
   * stream's backpressure; what a client that stopped reading costs agentk.
   */
  bufferedBytes(): number {
    let n = 0;
    for (const e of this.active.values()) n += e.bufferedBytes();
    return n;
  }

  /** Aborts every request in flight (their streams are reset); the client is closed by its owner. */
  close(): void {
    for (const e of this.active.values()) e.abort('GOING_AWAY');
  }
}

type Phase = 'starting' | 'waiting' | 'responding' | 'upgraded' | 'done';

/** Codes of undici's errors for a request it refuses to send (bad method, path or header). */
const INVALID_REQUEST = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED']);

/**
 * One request: its stream, its upstream request, and what has happened so far. On the undici path
 * the exchange is itself the dispatch handler (onConnect ... onError).
 */
class Exchange implements Dispatcher.DispatchHandlers {
  private phase: Phase = 'starting';
  /** undici path: aborts the upstream request (null before undici connected it, or on node:http). */
  private abortUpstream: ((err?: Error) => void) | null = null;
  /** undici path: the response's status and headers, until they go out. */
  private status = 0;
  private rawHeaders: string[] | null = null;
  /** undici path: body bytes that came with the head, held until the head goes out (one read at most). */
  private pending: Buffer[] | null = null;
  private pendingBytes = 0;
  private headSent = false;
  private resumeUpstream: (() => void) | null = null;
  private req: ClientRequest | null = null;
  private res: IncomingMessage | null = null;
  private socket: Socket | null = null;
  private settled = false;
  private head: HttpRequestHead | null = null;
  private upgrade = false;
  private childLog: Logger | null = null;

  constructor(
    private readonly stream: TunnelStream,
    private readonly client: ApiServerClient,
    private readonly metrics: AgentMetrics,
    private readonly parentLog: Logger,
    private readonly onDone: () => void,
  ) {}

  /** See ApiServerForwarder.bufferedBytes. */
  bufferedBytes(): number {
    const res = this.res;
    const upstream = res ? res.readableLength + (res.socket?.readableLength ?? 0) : (this.socket?.readableLength ?? 0);
    return upstream + this.pendingBytes + (this.stream.destroyed ? 0 : this.stream.bufferedLength);
  }

  /** This stream's logger, made when first needed (most requests log nothing at the default level). */
  get log(): Logger {
    return (this.childLog ??= this.parentLog.child({ streamId: this.stream.id }));
  }

  async run(): Promise<void> {
    const stream = this.stream;
    // Everything an exchange writes to the stream is handed over and never read again: undici's and
    // Node's response chunks (views of one socket read each), upgraded-socket reads, and the Status
    // bodies made for each refusal. The tunnel may mask them where they lie.
    stream.handsOverWrites = true;
    stream.once('close', () => this.onStreamClose());
    let head: HttpRequestHead;
    try {
      head = decodeRequestHead(stream.peerHead ?? {});
    } catch (err) {
      return this.refuse(400, (err as Error).message, 'bad_request');
    }
    this.head = head;
    if (head.method === 'CONNECT') return this.refuse(405, 'the CONNECT method is not supported', 'bad_request');
    const pathOnly = head.path.split('?', 1)[0]!;
    if (DOT_SEGMENT.test(pathOnly)) return this.refuse(400, 'invalid HTTP head: path must not contain "." or ".." segments', 'bad_request');
    if (head.impersonate && hasImpersonationHeaders(head.headers)) {
      return this.refuse(403, 'nested impersonation is not allowed: the request carries Impersonate-* headers and the agent already impersonates an identity for it', 'forbidden');
    }
    const named = connectionTokens(head.headers);
    const upgrade = isUpgradeRequest(named, headerValue(head.headers, 'upgrade'));
    this.upgrade = upgrade;
    const headers = upstreamRequestHeaders(head.headers, head.impersonate, upgrade, named);
    // The body, from the wire: an OPEN that ended the stream brought all of it, usually nothing
    // (takeWhole() is null while more may come), whatever the method. An upgrade sends none: what
    // kas sends after it is the switched protocol's bytes.
    const whole = upgrade ? null : stream.takeWhole();
    const streamed = !upgrade && whole === null;
    const known = whole === null || whole.length === 0 ? null : whole.length === 1 ? whole[0]! : Buffer.concat(whole);
    if (!upgrade && !streamed && headerValue(headers, 'expect') === undefined) return this.dispatch(head.method, head.path, headers, known);
    // A body of unknown length goes chunked: node:http would send it unframed for some methods
    // (DELETE) and drop it for others (GET).
    if ((streamed || known !== null) && headerValue(headers, 'content-length') === undefined) headers.push(['Transfer-Encoding', 'chunked']);

    let options;
    try {
      options = await this.client.requestOptions(head.method, head.path, flatten(headers));
    } catch (err) {
      return this.refuse(502, `cannot prepare the request to the Kubernetes API server: ${(err as Error).message}`, 'upstream_unavailable');
    }
    if (this.phase !== 'starting') return;
    let req: ClientRequest;
    try {
      req = this.client.request(options);
    } catch (err) {
      return this.refuse(400, `invalid request: ${(err as Error).message}`, 'bad_request');
    }
    this.req = req;
    this.phase = 'waiting';
    req.on('error', (err) => this.onUpstreamError(err));
    req.on('response', (res) => this.onResponse(res));
    if (upgrade) {
      req.on('upgrade', (res, socket, upgradeHead) => this.relayUpgrade(res, socket, upgradeHead));
      req.end();
    } else if (streamed) {
      stream.on('data', (chunk: Buffer) => this.metrics.relayed('request', chunk.byteLength));
      stream.pipe(req);
    } else if (known !== null) {
      this.metrics.relayed('request', known.byteLength);
      req.end(known);
    } else {
      req.end();
    }
  }

  /** The undici path: a request whose body (if any) is `body`, whole. */
  private async dispatch(method: string, path: string, headers: readonly HeaderPair[], body: Buffer | null): Promise<void> {
    let target;
    try {
      // Usually at hand: only a credential to re-read makes this request wait.
      const flat = flatten(headers);
      target = this.client.prepareNow(path, flat) ?? (await this.client.prepare(path, flat));
    } catch (err) {
      return this.refuse(502, `cannot prepare the request to the Kubernetes API server: ${(err as Error).message}`, 'upstream_unavailable');
    }
    if (this.phase !== 'starting') return;
    this.phase = 'waiting';
    if (body) this.metrics.relayed('request', body.byteLength);
    // Errors, the request's own included (a bad header), come to onError.
    this.client.dispatcher().dispatch({ method: method as Dispatcher.HttpMethod, path: target.path, headers: target.headers, body }, this);
  }

  onConnect(abort: (err?: Error) => void): void {
    // The stream may have closed while the request waited for a connection.
    if (this.phase === 'done') abort(new Error('the tunnel stream closed'));
    else this.abortUpstream = abort;
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (status < 200) return true; // 1xx informational: the final answer follows.
    if (this.phase !== 'waiting') return false;
    this.phase = 'responding';
    this.status = status;
    const names: string[] = new Array<string>(rawHeaders.length);
    for (let i = 0; i < rawHeaders.length; i++) names[i] = rawHeaders[i]!.toString('latin1');
    this.rawHeaders = names;
    this.resumeUpstream = resume;
    // The body that came in the same read is handed over right after; looking once that read is
    // done lets a small answer go out whole (head, body and end in one frame).
    queueMicrotask(() => this.sendHead(false));
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.phase !== 'responding') return false;
    this.metrics.relayed('response', chunk.byteLength);
    if (!this.headSent) {
      (this.pending ??= []).push(chunk);
      this.pendingBytes += chunk.byteLength;
      return true;
    }
    if (this.stream.write(chunk)) return true;
    this.stream.once('drain', this.resumeUpstream!);
    return false;
  }

  onComplete(): void {
    if (this.phase !== 'responding') return;
    this.abortUpstream = null;
    if (!this.headSent) this.sendHead(true);
    else this.stream.end();
  }

  onError(err: Error): void {
    this.abortUpstream = null;
    if (this.settled) return;
    if (this.phase === 'waiting' && INVALID_REQUEST.has((err as Error & { code?: string }).code ?? '')) {
      return this.refuse(400, `invalid request: ${err.message}`, 'bad_request');
    }
    // Nothing was relayed yet: the client gets a Status rather than a reset.
    if (this.phase === 'responding' && !this.headSent) this.phase = 'waiting';
    this.onUpstreamError(err);
  }

  /** undici path: the response head goes out, with what body came with it, and the end if it is all here. */
  private sendHead(complete: boolean): void {
    if (this.headSent || this.phase !== 'responding') return;
    this.headSent = true;
    const stream = this.stream;
    const pending = this.pending;
    this.pending = null;
    this.pendingBytes = 0;
    const body = pending === null ? undefined : pending.length === 1 ? pending[0]! : Buffer.concat(pending);
    try {
      stream.reply(encodeResponseHead({ status: this.status, headers: responseHeaders(this.rawHeaders!, false) }), complete ? { data: body, end: true } : undefined);
    } catch (err) {
      this.abortUpstream?.(err as Error);
      this.headSent = false;
      this.phase = 'waiting';
      return this.refuse(502, `the Kubernetes API server's response cannot be relayed: ${(err as Error).message}`, 'upstream_unavailable');
    }
    this.rawHeaders = null;
    if (this.parentLog.isLevelEnabled('debug')) this.log.debug({ method: this.head?.method, path: this.head?.path, status: this.status }, 'relaying response');
    stream.once('finish', () => this.settle('ok'));
    if (!complete && body !== undefined && !stream.write(body)) stream.once('drain', this.resumeUpstream!);
  }

  private onResponse(res: IncomingMessage): void {
    if (this.phase !== 'waiting') {
      res.destroy();
      return;
    }
    this.res = res;
    this.phase = 'responding';
    // 'response' comes as soon as the head is parsed; the body that came in the same read is parsed
    // right after. Looking once that read is done lets a small answer go out whole.
    queueMicrotask(() => this.relayResponse(res));
  }

  private relayResponse(res: IncomingMessage): void {
    if (this.phase !== 'responding') return;
    const stream = this.stream;
    const status = res.statusCode ?? 502;
    // The whole answer is already here (a small one comes in the same read as its head): head, body
    // and end go out in one frame, without piping. Its size is what one read held.
    const whole = res.complete;
    const body = whole ? (res.read() as Buffer | null) : null;
    try {
      stream.reply(encodeResponseHead({ status, headers: responseHeaders(res.rawHeaders, false) }), whole ? { data: body ?? undefined, end: true } : undefined);
    } catch (err) {
      res.destroy();
      this.req?.destroy();
      return this.refuse(502, `the Kubernetes API server's response cannot be relayed: ${(err as Error).message}`, 'upstream_unavailable');
    }
    if (this.parentLog.isLevelEnabled('debug')) this.log.debug({ method: this.head?.method, path: this.head?.path, status }, 'relaying response');
    // A refused upgrade: the client sends nothing more that the API server would read.
    if (this.upgrade) this.discardRequestBody();
    stream.once('finish', () => this.settle('ok'));
    if (whole) {
      if (body) this.metrics.relayed('response', body.byteLength);
      // Lets the message end, which hands its connection back to the keep-alive pool.
      res.resume();
      return;
    }
    res.on('data', (chunk: Buffer) => this.metrics.relayed('response', chunk.byteLength));
    res.on('error', (err) => this.onUpstreamError(err));
    res.on('close', () => {
      if (!res.complete) this.onUpstreamError(new Error('the API server closed the connection before the response was complete'));
    });
    res.pipe(stream);
  }

  private relayUpgrade(res: IncomingMessage, socket: Socket, upgradeHead: Buffer): void {
    const stream = this.stream;
    if (this.phase !== 'waiting') {
      socket.destroy();
      return;
    }
    this.phase = 'upgraded';
    this.socket = socket;
    try {
      stream.reply(encodeResponseHead({ status: res.statusCode ?? 101, headers: responseHeaders(res.rawHeaders, true) }));
    } catch (err) {
      socket.destroy();
      return this.refuse(502, `the Kubernetes API server's upgrade response cannot be relayed: ${(err as Error).message}`, 'upstream_unavailable');
    }
    this.log.debug({ method: this.head?.method, path: this.head?.path, upgrade: headerValue(this.head?.headers ?? [], 'upgrade') }, 'connection upgraded');
    // Each direction ends on its own: the API server's FIN must not end what the client still sends.
    socket.allowHalfOpen = true;
    socket.setNoDelay(true);
    socket.on('error', (err) => this.onUpstreamError(err));
    socket.on('close', () => {
      if (!stream.writableEnded) this.onUpstreamError(new Error('the API server closed the upgraded connection'));
      else if (!stream.destroyed && !stream.readableEnded) stream.reset('UPSTREAM_ERROR', 'the API server closed the upgraded connection');
    });
    socket.on('data', (chunk: Buffer) => this.metrics.relayed('response', chunk.byteLength));
    stream.on('data', (chunk: Buffer) => this.metrics.relayed('request', chunk.byteLength));
    if (upgradeHead.byteLength > 0) {
      this.metrics.relayed('response', upgradeHead.byteLength);
      stream.write(upgradeHead);
    }
    socket.pipe(stream);
    stream.pipe(socket);
  }

  private onUpstreamError(err: Error): void {
    if (this.settled) return;
    switch (this.phase) {
      case 'waiting':
        this.log.warn({ err: err.message, method: this.head?.method, path: this.head?.path }, 'the Kubernetes API server could not be reached');
        return this.refuse(502, `failed to reach the Kubernetes API server: ${err.message}`, 'upstream_unavailable');
      case 'responding':
      case 'upgraded':
        this.log.warn({ err: err.message, method: this.head?.method, path: this.head?.path }, 'the Kubernetes API server connection failed mid-response');
        this.settle('upstream_error');
        this.stream.reset('UPSTREAM_ERROR', `Kubernetes API server: ${err.message}`);
        return;
      default:
        return;
    }
  }

  /** The stream closed: cleanly (both directions ended) or because kas reset it or the session died. */
  private onStreamClose(): void {
    const s = this.stream;
    const clean = s.readableEnded && s.writableFinished && !s.errored;
    if (this.phase === 'upgraded' && clean) this.settle('upgraded');
    else if (!clean && !this.settled) {
      this.log.debug({ err: (s.errored as Error | null)?.message }, 'stream closed before the response completed: aborting the upstream request');
      this.settle('cancelled');
    }
    this.teardown(!clean);
  }

  private teardown(destroyUpstream: boolean): void {
    this.phase = 'done';
    if (destroyUpstream) {
      this.abortUpstream?.(new Error('the tunnel stream closed'));
      this.abortUpstream = null;
      this.req?.destroy();
      this.res?.destroy();
      this.socket?.destroy();
    }
    this.onDone();
  }

  /** Fails the stream with a coded reset (used on shutdown and unexpected failures). */
  abort(code: 'GOING_AWAY' | 'INTERNAL'): void {
    this.settle(code === 'GOING_AWAY' ? 'cancelled' : 'upstream_error');
    this.stream.reset(code, code === 'GOING_AWAY' ? 'agentk is shutting down' : 'agentk failed to serve the request');
    this.teardown(true);
  }

  /** Answers with a Status of agentk's own and ends the stream; whatever the client still sends is discarded. */
  private refuse(code: number, message: string, outcome: StreamOutcome): void {
    const stream = this.stream;
    this.settle(outcome);
    this.phase = 'done';
    if (stream.destroyed) return;
    const { head, body } = statusReply(code, message);
    try {
      stream.reply(head, { data: body, end: true });
    } catch {
      // The head was already sent (an upstream failure after the reply could not be framed): reset instead.
      stream.reset('UPSTREAM_ERROR', message);
      return;
    }
    this.discardRequestBody();
    if (code >= 500) {
      this.req?.destroy();
      this.abortUpstream?.(new Error(message));
      this.abortUpstream = null;
    }
  }

  private discardRequestBody(): void {
    const stream = this.stream;
    if (stream.readableEnded || stream.destroyed) return;
    stream.unpipe();
    stream.resume();
  }

  private settle(outcome: StreamOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.metrics.streamsServed.inc({ outcome });
  }
}
