/**
 * One list-and-watch cache of one resource type (in one namespace or all, with one label selector
 * or none), shared by every handle that asked for it. The loop:
 *
 *   list (paginated, 500 per page)  ->  watch from the list's resourceVersion  ->  on the watch's
 *   normal end: watch again from the last resourceVersion seen (bookmarks included)
 *                                      on 410 Gone (the resourceVersion is too old): list again
 *                                      on an error: wait (exponential backoff, full jitter, 30 s cap)
 *                                      and watch again, or list again when the list failed
 *
 * A relist replaces the cache and emits the differences to the listeners (diffSnapshots), so a
 * listener that saw every event has the same picture as the cache afterwards.
 */
import type { IncomingMessage } from 'node:http';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../../shared/logger.js';
import type { ApiServerClient } from '../kubernetes-api/api-server.js';
import type { AgentMetrics } from '../observability/metrics.js';
import { Backoff, type BackoffOptions } from '../tunnel/backoff.js';
import { diffSnapshots, keyOf, resourceVersionOf, stripObject, type InformerEvent } from './cache.js';

export interface ResourceType {
  /** API group, '' for the core group. */
  group: string;
  version: string;
  /** The resource's plural name, as in the URL. */
  plural: string;
  kind: string;
  namespaced: boolean;
}

/** Restart delays of the watch and the list: full jitter, up to 30 s; a watch that lived 30 s resets them. */
export const INFORMER_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ baseMs: 500, capMs: 30_000, resetAfterMs: 30_000 });
/** Objects per page of a list. */
export const LIST_PAGE_SIZE = 500;
/** The watch asks the server to end it after a random time in [min, 2*min) s, as client-go does. */
export const WATCH_TIMEOUT_MIN_S = 300;
/** A warning about the same informer's failures at most this often (the others are counted in it). */
export const WARN_INTERVAL_MS = 60_000;
/** A watch that ended normally sooner than this is retried after a backoff delay, ms. */
const QUICK_END_MS = 1000;
/** A single watch event larger than this is treated as a broken stream. */
const MAX_EVENT_BYTES = 64 * 1024 * 1024;

/** Why the watch was started again: `agentk_informer_watch_restarts_total{reason}`. */
export type WatchRestartReason = 'ended' | 'expired' | 'error';

export interface SharedInformerOptions {
  type: ResourceType;
  namespace?: string;
  labelSelector?: string;
  client: ApiServerClient;
  metrics: AgentMetrics;
  logger: Logger;
  /** Drop managedFields and the last-applied annotation from cached copies (default true). */
  strip?: boolean;
  backoff?: Partial<BackoffOptions>;
  /** Server-side watch timeout, s (default random in [300, 600)). */
  watchTimeoutSeconds?: number;
}

/** The `resource` label of an informer's metrics: the plural, with `.group` for non-core groups. */
export function resourceLabel(type: ResourceType): string {
  return type.group === '' ? type.plural : `${type.plural}.${type.group}`;
}

/** The collection path of a type, in a namespace or across all. */
export function collectionPath(type: ResourceType, namespace?: string): string {
  const base = type.group === '' ? `/api/${type.version}` : `/apis/${type.group}/${type.version}`;
  const ns = type.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${type.plural}`;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

class Stopped extends Error {}

interface ListResult {
  items: Map<string, KubernetesObject>;
  resourceVersion: string;
}

interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: KubernetesObject & { code?: number; message?: string; reason?: string };
}

export class SharedInformer {
  readonly resource: string;
  private readonly options: SharedInformerOptions;
  private readonly strip: boolean;
  private readonly backoff: Backoff;
  private cache = new Map<string, KubernetesObject>();
  private resourceVersion = '';
  private syncedValue = false;
  private syncWaiters = new Set<{ resolve: () => void; reject: (err: Error) => void }>();
  private readonly listeners = new Set<(ev: InformerEvent<KubernetesObject>) => void>();
  private readonly abort = new AbortController();
  private running: Promise<void> | null = null;
  /** Lists done, the first one included. */
  lists = 0;
  /** Watch requests started. */
  watches = 0;
  private lastWarnAt = -Infinity;
  private suppressedWarnings = 0;

  constructor(options: SharedInformerOptions) {
    this.options = options;
    this.resource = resourceLabel(options.type);
    this.strip = options.strip ?? true;
    this.backoff = new Backoff({ ...INFORMER_BACKOFF, ...options.backoff });
  }

  get synced(): boolean {
    return this.syncedValue;
  }

  get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  get size(): number {
    return this.cache.size;
  }

  list(): KubernetesObject[] {
    return [...this.cache.values()];
  }

  get(key: string): KubernetesObject | undefined {
    return this.cache.get(key);
  }

  on(listener: (ev: InformerEvent<KubernetesObject>) => void): () => void {
    // Each registration is its own entry, so the same function added twice is removed once per call.
    const entry = (ev: InformerEvent<KubernetesObject>) => listener(ev);
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.syncedValue) return Promise.resolve();
    if (this.stopped) return Promise.reject(new Error(`the ${this.resource} informer was stopped before it synced`));
    if (signal?.aborted) return Promise.reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.syncWaiters.delete(waiter);
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const waiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      this.syncWaiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  start(): void {
    if (this.running) return;
    const { logger, type, namespace, labelSelector } = this.options;
    logger.info({ resource: this.resource, namespace, labelSelector, kind: type.kind }, 'informer starting');
    this.options.metrics.informerObjects.inc({ resource: this.resource }, 0);
    this.options.metrics.informerRelists.inc({ resource: this.resource }, 0);
    this.running = this.run().catch((err: unknown) => {
      if (!(err instanceof Stopped)) logger.error({ err, resource: this.resource }, 'informer loop failed');
    });
  }

  /** Stops the list and the watch; resolves when the loop has ended. The cache is dropped. */
  async stop(): Promise<void> {
    if (this.stopped) return this.running ?? undefined;
    this.abort.abort(new Stopped('informer stopped'));
    for (const w of this.syncWaiters) w.reject(new Error(`the ${this.resource} informer was stopped before it synced`));
    this.syncWaiters.clear();
    this.listeners.clear();
    await this.running;
    this.options.metrics.informerObjects.dec({ resource: this.resource }, this.cache.size);
    this.cache = new Map();
    const { logger, namespace, labelSelector } = this.options;
    logger.info({ resource: this.resource, namespace, labelSelector }, 'informer stopped');
  }

  private async run(): Promise<void> {
    let needList = true;
    while (!this.stopped) {
      if (needList) {
        try {
          await this.relist();
          needList = false;
        } catch (err) {
          if (this.stopped) return;
          // A continue token that expired between two pages: start the list over at once.
          if (err instanceof HttpError && err.status === 410) continue;
          this.warn(err, 'cannot list');
          await this.sleep(this.backoff.next());
          continue;
        }
      }
      const startedAt = Date.now();
      let reason: WatchRestartReason;
      try {
        reason = await this.watch();
      } catch (err) {
        if (this.stopped) return;
        this.warn(err, 'watch failed');
        reason = 'error';
      }
      if (this.stopped) return;
      this.options.metrics.informerWatchRestarts.inc({ resource: this.resource, reason });
      this.backoff.connectionEnded(Date.now() - startedAt);
      if (reason === 'expired') {
        needList = true;
      } else if (reason === 'error' || Date.now() - startedAt < QUICK_END_MS) {
        // A watch that ends at once (a server shutting down) must not become a busy loop either.
        await this.sleep(this.backoff.next());
      }
    }
  }

  /** Lists everything, replaces the cache and tells listeners what changed. */
  private async relist(): Promise<void> {
    const result = await this.listAll();
    if (this.stopped) return;
    if (this.lists > 0) this.options.metrics.informerRelists.inc({ resource: this.resource });
    this.lists++;
    const before = this.cache;
    this.cache = result.items;
    this.resourceVersion = result.resourceVersion;
    this.options.metrics.informerObjects.inc({ resource: this.resource }, result.items.size - before.size);
    const events = diffSnapshots(before, result.items);
    for (const ev of events) this.emit(ev);
    if (!this.syncedValue) {
      this.syncedValue = true;
      for (const w of this.syncWaiters) w.resolve();
      this.syncWaiters.clear();
      this.options.logger.info({ resource: this.resource, namespace: this.options.namespace, objects: this.cache.size }, 'informer synced');
    }
  }

  private query(extra: Record<string, string>): string {
    const params = new URLSearchParams();
    if (this.options.labelSelector) params.set('labelSelector', this.options.labelSelector);
    for (const [k, v] of Object.entries(extra)) params.set(k, v);
    return `${collectionPath(this.options.type, this.options.namespace)}?${params.toString()}`;
  }

  private async listAll(): Promise<ListResult> {
    const items = new Map<string, KubernetesObject>();
    let resourceVersion = '';
    let continueToken = '';
    do {
      const page = (await this.getJson(this.query({ limit: String(LIST_PAGE_SIZE), ...(continueToken ? { continue: continueToken } : {}) }))) as {
        items?: KubernetesObject[];
        metadata?: { resourceVersion?: string; continue?: string };
      };
      if (!Array.isArray(page.items)) throw new Error('the list answer has no items');
      if (resourceVersion === '') resourceVersion = page.metadata?.resourceVersion ?? '';
      for (const item of page.items) {
        if (this.strip) stripObject(item);
        items.set(keyOf(item), item);
      }
      continueToken = page.metadata?.continue ?? '';
    } while (continueToken !== '');
    return { items, resourceVersion };
  }

  /** GET path and parse the JSON answer; a status other than 200 throws HttpError. */
  private async getJson(path: string): Promise<unknown> {
    const res = await this.send(path);
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    if (res.statusCode !== 200) throw new HttpError(res.statusCode ?? 0, `HTTP ${res.statusCode} from GET ${path}: ${body.slice(0, 300)}`);
    return JSON.parse(body) as unknown;
  }

  private async send(path: string): Promise<IncomingMessage> {
    const { client } = this.options;
    const options = await client.requestOptions('GET', path, ['Accept', 'application/json']);
    if (this.stopped) throw new Stopped('informer stopped');
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = client.request({ ...options, signal: this.abort.signal });
      req.on('error', reject);
      req.on('response', resolve);
      req.end();
    });
  }

  /** One watch request, from the current resourceVersion. Resolves with why it ended; throws on errors. */
  private async watch(): Promise<WatchRestartReason> {
    this.watches++;
    const timeout = this.options.watchTimeoutSeconds ?? WATCH_TIMEOUT_MIN_S + Math.floor(Math.random() * WATCH_TIMEOUT_MIN_S);
    const path = this.query({ watch: '1', allowWatchBookmarks: 'true', resourceVersion: this.resourceVersion, timeoutSeconds: String(timeout) });
    const res = await this.send(path);
    if (res.statusCode === 410) {
      res.resume();
      return 'expired';
    }
    if (res.statusCode !== 200) {
      const chunks: Buffer[] = [];
      for await (const chunk of res) chunks.push(chunk as Buffer);
      throw new HttpError(res.statusCode ?? 0, `HTTP ${res.statusCode} from the watch: ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`);
    }
    res.socket?.setKeepAlive(true, 30_000);
    // The server ends the watch after `timeout` s and sends bookmarks meanwhile: a watch silent for
    // much longer sits on a dead connection that TCP has not noticed yet.
    let lastDataAt = Date.now();
    const silentMs = (timeout + 60) * 1000;
    const deadman = setInterval(() => {
      if (Date.now() - lastDataAt > silentMs) res.destroy(new Error(`the watch was silent for ${Math.round(silentMs / 1000)} s`));
    }, Math.min(30_000, silentMs));
    try {
      return await this.readWatch(res, () => (lastDataAt = Date.now()));
    } finally {
      clearInterval(deadman);
    }
  }

  /** Reads a watch's lines and applies them; resolves with why the watch ended. */
  private async readWatch(res: IncomingMessage, onData: () => void): Promise<WatchRestartReason> {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let sawEvent = false;
    for await (const chunk of res) {
      onData();
      let data = chunk as Buffer;
      let newline = data.indexOf(10);
      while (newline !== -1) {
        const line = pendingBytes === 0 ? data.subarray(0, newline) : Buffer.concat([...pending, data.subarray(0, newline)]);
        pending = [];
        pendingBytes = 0;
        data = data.subarray(newline + 1);
        newline = data.indexOf(10);
        if (line.length === 0) continue;
        const ev = JSON.parse(line.toString('utf8')) as WatchEvent;
        const outcome = this.apply(ev);
        if (outcome !== null) {
          res.destroy();
          return outcome;
        }
        if (!sawEvent) {
          sawEvent = true;
          this.recovered();
        }
      }
      if (data.length > 0) {
        pending.push(data);
        pendingBytes += data.length;
        if (pendingBytes > MAX_EVENT_BYTES) throw new Error(`a watch event is larger than ${MAX_EVENT_BYTES} bytes`);
      }
    }
    if (!res.complete) throw new Error('the watch connection was cut');
    return 'ended';
  }

  /** Applies one watch event; returns why the watch must end, or null to go on. */
  private apply(ev: WatchEvent): WatchRestartReason | null {
    const object = ev.object;
    switch (ev.type) {
      case 'ADDED':
      case 'MODIFIED': {
        if (this.strip) stripObject(object);
        const key = keyOf(object);
        const old = this.cache.get(key);
        this.cache.set(key, object);
        this.resourceVersion = resourceVersionOf(object) || this.resourceVersion;
        if (old === undefined) {
          this.options.metrics.informerObjects.inc({ resource: this.resource });
          this.emit({ type: 'add', object });
        } else {
          this.emit({ type: 'update', object, old });
        }
        return null;
      }
      case 'DELETED': {
        if (this.strip) stripObject(object);
        const key = keyOf(object);
        const old = this.cache.get(key);
        this.resourceVersion = resourceVersionOf(object) || this.resourceVersion;
        if (old !== undefined) {
          this.cache.delete(key);
          this.options.metrics.informerObjects.dec({ resource: this.resource });
          this.emit({ type: 'delete', object });
        }
        return null;
      }
      case 'BOOKMARK':
        this.resourceVersion = resourceVersionOf(object) || this.resourceVersion;
        return null;
      case 'ERROR':
        if (object.code === 410) return 'expired';
        throw new HttpError(object.code ?? 0, `the watch sent an error: ${object.message ?? JSON.stringify(object).slice(0, 300)}`);
      default:
        throw new Error(`unknown watch event type ${JSON.stringify((ev as { type?: unknown }).type)}`);
    }
  }

  private emit(ev: InformerEvent<KubernetesObject>): void {
    for (const listener of this.listeners) {
      try {
        listener(ev);
      } catch (err) {
        this.options.logger.error({ err, resource: this.resource }, 'an informer listener threw');
      }
    }
  }

  private warn(err: unknown, what: string): void {
    const now = Date.now();
    if (now - this.lastWarnAt < WARN_INTERVAL_MS) {
      this.suppressedWarnings++;
      return;
    }
    this.lastWarnAt = now;
    const suppressed = this.suppressedWarnings;
    this.suppressedWarnings = 0;
    this.options.logger.warn({ err, resource: this.resource, namespace: this.options.namespace, suppressed }, `informer: ${what}; retrying with backoff`);
  }

  /** The watch delivers again after failures: say so once. */
  private recovered(): void {
    if (this.lastWarnAt === -Infinity) return;
    this.options.logger.info({ resource: this.resource, namespace: this.options.namespace, suppressed: this.suppressedWarnings }, 'informer watch recovered');
    this.lastWarnAt = -Infinity;
    this.suppressedWarnings = 0;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopped) return resolve();
      const onAbort = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.abort.signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      this.abort.signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
