/**
 * Flux reconcile-on-push, agentk half. When the API server serves Flux's GitRepository and
 * Receiver (checked at start and every `discoveryIntervalMs`; without them the feature idles and
 * says so once), the leader pod:
 *
 * 1. watches GitRepositories (informer) and maps each whose `spec.url` points at a configured
 *    GitLab to a project path (git-url.ts);
 * 2. keeps a `generic-hmac` Receiver and its Secret for each (receivers.ts), owned by the
 *    GitRepository;
 * 3. follows the projects over a `flux_git_push` stream to kas (push-stream.ts);
 * 4. on a push, POSTs a signed request to each matching Receiver's webhook at the
 *    notification-controller, which makes Flux fetch the repository at once.
 *
 * A pod that is not (or stops being) the leader does none of this.
 */
import http from 'node:http';
import https from 'node:https';
import type { KubernetesObject } from '@kubernetes/client-node';
import { projectKey } from '../../protocol/flux.js';
import type { Logger } from '../../shared/logger.js';
import type { InformerEvent, InformerHandle, Informers } from '../informers/informers.js';
import type { Leadership } from '../leader-election/leader-elector.js';
import type { AgentkModule } from '../module.js';
import type { BackoffOptions } from '../tunnel/backoff.js';
import type { KasStreams } from '../tunnel/kas-streams.js';
import { projectPathOf } from './git-url.js';
import { discoverFlux, SOURCE_GROUP, type FluxApis, type KubeRequester } from './kube.js';
import type { FluxAgentMetrics, WebhookResult } from './metrics.js';
import { FluxPushClient } from './push-stream.js';
import { ReceiverConflictError, ReceiverManager } from './receivers.js';
import { SIGNATURE_HEADER, signGenericHmac } from './signature.js';

/** Flux's default address of the notification-controller's webhook receiver (the `webhook-receiver` Service). */
export const DEFAULT_NOTIFICATION_CONTROLLER_URL = 'http://webhook-receiver.flux-system.svc.cluster.local';

export interface FluxOptions {
  /** The GitLab URLs a GitRepository's URL must point at (--flux-gitlab-url); none: the feature is off. */
  gitlabUrls: readonly URL[];
  /** Where the Receivers' webhook paths are served (--flux-notification-controller-url). */
  notificationControllerUrl: URL;
  /** How often the Flux APIs are looked for again, ms (default 5 min). */
  discoveryIntervalMs?: number;
  /** How often every Receiver is made sure of again (one deleted by hand comes back), ms (default 60 s). */
  resyncIntervalMs?: number;
  /** Deadline of one webhook call, ms (default 10 s). */
  webhookTimeoutMs?: number;
  backoff?: Partial<BackoffOptions>;
}

export interface FluxModuleDeps {
  options: FluxOptions;
  kube: KubeRequester;
  informers: Informers;
  leader: Leadership;
  kas: Pick<KasStreams, 'open' | 'servedBy'>;
  metrics: FluxAgentMetrics;
  logger: Logger;
}

interface GitRepository extends KubernetesObject {
  spec?: { url?: unknown };
}

interface Followed {
  namespace: string;
  name: string;
  uid: string;
  project: string;
  /** Set once the Receiver and Secret are made sure of. */
  receiver: { name: string; token: string } | null;
}

export class FluxModule implements AgentkModule {
  readonly name = 'flux';
  private apis: FluxApis | null = null;
  private loggedIdle = false;
  private discoveryTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private unsubscribeLeader: (() => void) | null = null;
  private active: Active | null = null;
  /** Serializes activation and deactivation. */
  private transition: Promise<void> = Promise.resolve();

  constructor(private readonly d: FluxModuleDeps) {}

  start(): Promise<void> {
    if (this.d.options.gitlabUrls.length === 0) {
      this.d.logger.info('no --flux-gitlab-url given: Flux reconcile-on-push is off');
      return Promise.resolve();
    }
    void this.discover();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.discoveryTimer) clearTimeout(this.discoveryTimer);
    this.unsubscribeLeader?.();
    this.schedule(false);
    await this.transition;
  }

  /** The followed GitRepositories (tests, debugging). */
  get followed(): number {
    return this.active?.repos.size ?? 0;
  }

  private async discover(): Promise<void> {
    if (this.stopped) return;
    let apis: FluxApis | null = null;
    let failed = false;
    try {
      apis = await discoverFlux(this.d.kube);
    } catch (err) {
      failed = true;
      this.d.logger.warn({ err }, 'could not ask the API server whether Flux is installed; asking again later');
    }
    if (this.stopped) return;
    if (!failed) {
      if (apis && !this.apis) {
        this.d.logger.info({ source: apis.source, notification: apis.notification }, 'Flux found: following GitRepositories of the configured GitLab when leader');
        this.apis = apis;
        this.unsubscribeLeader ??= this.d.leader.onChange(() => this.schedule(this.wanted()));
        this.schedule(this.wanted());
      } else if (!apis && this.apis) {
        this.d.logger.info('the Flux APIs are no longer served: Flux reconcile-on-push idles');
        this.apis = null;
        this.schedule(false);
      } else if (!apis && !this.loggedIdle) {
        this.loggedIdle = true;
        this.d.logger.info('Flux is not installed (gitrepositories.source.toolkit.fluxcd.io and receivers.notification.toolkit.fluxcd.io are not served): Flux reconcile-on-push idles');
      }
    }
    const interval = this.d.options.discoveryIntervalMs ?? 5 * 60_000;
    // A failed look (API server not reachable yet) is retried sooner than the periodic re-check.
    this.discoveryTimer = setTimeout(() => void this.discover(), failed ? Math.min(interval, 30_000) : interval);
    this.discoveryTimer.unref();
  }

  private wanted(): boolean {
    return !this.stopped && this.apis !== null && this.d.leader.isLeader;
  }

  /** Starts or stops the active part, one transition at a time. */
  private schedule(on: boolean): void {
    this.transition = this.transition.then(async () => {
      const want = on && this.wanted();
      if (want && !this.active) this.active = this.activate(this.apis!);
      else if (!want && this.active) {
        const a = this.active;
        this.active = null;
        await a.stop();
      }
    });
  }

  private activate(apis: FluxApis): Active {
    this.d.logger.info('leading: following Flux GitRepositories');
    return new Active(apis, this.d);
  }
}

/** What runs while this pod leads and Flux is installed. */
class Active {
  readonly repos = new Map<string, Followed>();
  private readonly receivers: ReceiverManager;
  private readonly handle: InformerHandle<GitRepository>;
  private readonly offEvents: () => void;
  private readonly client: FluxPushClient;
  private readonly resync: NodeJS.Timeout;
  private stopped = false;

  constructor(
    apis: FluxApis,
    private readonly d: FluxModuleDeps,
  ) {
    this.receivers = new ReceiverManager(d.kube, apis, d.logger);
    this.client = new FluxPushClient({ kas: d.kas, logger: d.logger, metrics: d.metrics, backoff: d.options.backoff, onPush: (p) => this.onPush(p) });
    this.handle = d.informers.acquire<GitRepository>({ group: SOURCE_GROUP, version: apis.source, plural: 'gitrepositories', kind: 'GitRepository', namespaced: true });
    this.offEvents = this.handle.on((ev) => this.onEvent(ev));
    this.resync = setInterval(() => this.ensureAll(), d.options.resyncIntervalMs ?? 60_000);
    this.resync.unref();
    void this.handle.waitForSync().then(
      () => {
        if (this.stopped) return;
        for (const obj of this.handle.list()) this.track(obj);
        this.publish();
        this.client.start();
      },
      () => undefined,
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resync);
    this.offEvents();
    this.handle.release();
    await this.client.stop();
    this.repos.clear();
    this.d.metrics.gitRepositories.set(0);
  }

  private onEvent(ev: InformerEvent<GitRepository>): void {
    if (this.stopped || !this.handle.synced) return;
    if (ev.type === 'delete') {
      const key = `${ev.object.metadata?.namespace ?? ''}/${ev.object.metadata?.name ?? ''}`;
      if (this.repos.delete(key)) this.publish();
      return;
    }
    this.track(ev.object);
    this.publish();
  }

  /** Follows (or stops following) one GitRepository after it changed. */
  private track(obj: GitRepository): void {
    const namespace = obj.metadata?.namespace;
    const name = obj.metadata?.name;
    const uid = obj.metadata?.uid;
    if (!namespace || !name || !uid) return;
    const key = `${namespace}/${name}`;
    const project = projectPathOf(obj.spec?.url, this.d.options.gitlabUrls);
    const known = this.repos.get(key);
    if (!project) {
      this.repos.delete(key);
      return;
    }
    if (known && known.uid === uid && known.project === project) return;
    const followed: Followed = { namespace, name, uid, project, receiver: null };
    this.repos.set(key, followed);
    void this.ensure(followed);
  }

  private async ensure(f: Followed): Promise<void> {
    try {
      const r = await this.receivers.ensure({ namespace: f.namespace, name: f.name, uid: f.uid });
      f.receiver = { name: r.receiver, token: r.token };
    } catch (err) {
      if (this.stopped) return;
      if (err instanceof ReceiverConflictError) this.d.logger.warn({ namespace: f.namespace, gitRepository: f.name, err: err.message }, 'cannot make the Flux Receiver of a GitRepository');
      else this.d.logger.warn({ err, namespace: f.namespace, gitRepository: f.name }, 'making the Flux Receiver of a GitRepository failed; trying again later');
    }
  }

  private ensureAll(): void {
    for (const f of this.repos.values()) void this.ensure(f);
  }

  private publish(): void {
    const projects = new Map<string, string>();
    for (const f of this.repos.values()) if (!projects.has(projectKey(f.project))) projects.set(projectKey(f.project), f.project);
    this.d.metrics.gitRepositories.set(this.repos.size);
    this.client.setProjects([...projects.values()]);
  }

  private onPush(project: string): void {
    const key = projectKey(project);
    for (const f of this.repos.values()) if (projectKey(f.project) === key) void this.notify(f);
  }

  private async notify(f: Followed): Promise<void> {
    if (!f.receiver) await this.ensure(f);
    const receiver = f.receiver;
    if (!receiver || this.stopped) {
      this.count('error');
      return;
    }
    let path: string | null;
    try {
      path = await this.receivers.webhookPath(f.namespace, receiver.name);
    } catch (err) {
      this.d.logger.warn({ err, namespace: f.namespace, receiver: receiver.name }, 'reading a Flux Receiver failed');
      this.count('error');
      return;
    }
    if (!path) {
      this.d.logger.warn({ namespace: f.namespace, receiver: receiver.name }, 'the Flux Receiver has no status.webhookPath yet (is the notification-controller running?): push not passed on');
      this.count('no_webhook_path');
      return;
    }
    const body = JSON.stringify({ source: 'gitlab-agent', event: 'push', project: f.project, gitRepository: { namespace: f.namespace, name: f.name } });
    const url = new URL(path, this.d.options.notificationControllerUrl);
    try {
      const status = await post(url, body, { 'Content-Type': 'application/json', [SIGNATURE_HEADER]: signGenericHmac(body, receiver.token) }, this.d.options.webhookTimeoutMs ?? 10_000);
      if (status >= 200 && status < 300) {
        this.count('ok');
        this.d.logger.debug({ namespace: f.namespace, gitRepository: f.name, project: f.project }, 'Flux Receiver called');
      } else {
        this.count('refused');
        this.d.logger.warn({ namespace: f.namespace, receiver: receiver.name, status }, 'the Flux Receiver refused the call');
      }
    } catch (err) {
      this.count('error');
      this.d.logger.warn({ err, namespace: f.namespace, receiver: receiver.name, url: url.origin }, 'calling the Flux Receiver failed');
    }
  }

  private count(result: WebhookResult): void {
    this.d.metrics.webhookCalls.inc({ result });
  }
}

/** POSTs `body`; resolves with the status (the answer's body is discarded). */
function post(url: URL, body: string, headers: Record<string, string>, timeoutMs: number): Promise<number> {
  const lib = url.protocol === 'https:' ? https : http;
  const payload = Buffer.from(body);
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method: 'POST', headers: { ...headers, 'Content-Length': String(payload.byteLength) }, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}
