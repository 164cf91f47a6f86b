/**
 * Cluster events, agentk half: follows core/v1 Events through the informer layer, keeps those the
 * `observability.events` section selects (type, namespaces, the involved object's labels), merges
 * repeats, limits the rate and sends them to kas on an `agent_events` stream.
 *
 * agentk begins to follow once a kas that takes cluster events is connected (an older kas costs
 * the cluster no watch). Only events that happen after agentk began to follow are sent: what the informer's first list
 * finds (the backlog) is not. A later relist (after a watch was cut) sends the events that came in
 * between, and an Event counting up sends the new occurrences.
 */
import type { AgentkModule, AgentkModuleContext, AgentkModuleFactory } from '../module.js';
import type { InformerHandle } from '../informers/informers.js';
import { RESOURCES, type InformerEvent } from '../informers/informers.js';
import type { ApiServerClient } from '../kubernetes-api/api-server.js';
import { AGENT_EVENTS_STREAM } from '../../protocol/cluster-events.js';
import { matchesLabels } from '../../shared/label-selector.js';
import { newOccurrences, recordOf, type KubeEvent } from './event-record.js';
import { EventMerger } from './merger.js';
import { ClusterEventsAgentMetrics } from './metrics.js';
import { getJsonWith, ObjectLabels } from './object-labels.js';
import { EventSender } from './sender.js';
import { eventSettings, type EventSettings } from './settings.js';
import { TokenBucket } from './token-bucket.js';

export interface ClusterEventsOptions {
  /** How often waiting records are written, ms (default 250): the window in which repeats merge for free. */
  flushMs?: number;
}

class ClusterEventsAgent implements AgentkModule {
  readonly name = 'cluster_events';
  private readonly metrics: ClusterEventsAgentMetrics;
  private readonly bucket: TokenBucket;
  private readonly merger: EventMerger;
  private readonly sender: EventSender;
  private readonly labels: ObjectLabels;
  private settings: EventSettings;
  private handles: InformerHandle<KubeEvent>[] = [];
  private unsubscribe: (() => void) | null = null;
  private unfollowSessions: (() => void) | null = null;
  /** True once a kas that serves agent_events was connected. */
  private kasTakesEvents = false;

  constructor(
    private readonly ctx: AgentkModuleContext,
    client: ApiServerClient,
    options: ClusterEventsOptions,
  ) {
    this.metrics = new ClusterEventsAgentMetrics(ctx.metrics.registry);
    this.settings = eventSettings(undefined);
    this.bucket = new TokenBucket(this.settings.rate, this.settings.burst);
    this.merger = new EventMerger({ bucket: this.bucket, metrics: this.metrics, onQueued: () => this.sender.schedule() });
    this.sender = new EventSender({ kas: ctx.kas, merger: this.merger, metrics: this.metrics, logger: ctx.logger, flushMs: options.flushMs, backoff: ctx.options.backoff });
    this.labels = new ObjectLabels(getJsonWith(client));
  }

  async start(): Promise<void> {
    this.sender.start();
    this.unsubscribe = this.ctx.configuration.subscribe('observability', (observability) => {
      let next: EventSettings;
      try {
        next = eventSettings(observability);
      } catch (err) {
        this.ctx.logger.warn({ err }, 'observability.events is not usable; keeping the previous settings');
        return;
      }
      this.apply(next);
    });
    this.unfollowSessions = this.ctx.kas.onSession((session) => {
      if (this.kasTakesEvents || !session.features.has(AGENT_EVENTS_STREAM)) return;
      this.kasTakesEvents = true;
      if (this.handles.length === 0 && this.settings.types.size > 0) this.follow(this.settings);
    });
  }

  async stop(): Promise<void> {
    this.kasTakesEvents = false;
    this.unfollowSessions?.();
    this.unsubscribe?.();
    this.release();
    await this.sender.stop();
  }

  private apply(next: EventSettings): void {
    const prev = this.settings;
    this.settings = next;
    this.bucket.configure(next.rate, next.burst);
    const summary = (s: EventSettings) => JSON.stringify([[...s.types], s.namespaces, s.labelSelector, s.rate, s.burst]);
    if (summary(prev) !== summary(next)) {
      this.ctx.logger.info({ types: [...next.types], namespaces: next.namespaces, labelSelector: next.labelSelector, rateLimit: next.rate, burst: next.burst }, 'cluster events settings applied');
    }
    const watching = this.handles.length > 0;
    const wanted = next.types.size > 0;
    if (watching && wanted && prev.namespaces.join(',') === next.namespaces.join(',')) return;
    this.release();
    if (wanted && this.kasTakesEvents) this.follow(next);
  }

  private follow(s: EventSettings): void {
    const scopes: Array<string | undefined> = s.namespaces.length > 0 ? [...s.namespaces] : [undefined];
    for (const namespace of scopes) {
      const handle = this.ctx.informers.acquire<KubeEvent>(RESOURCES.events, namespace ? { namespace } : {});
      // Events delivered before the first list completed are that list: the backlog, not sent.
      handle.on((ev) => {
        if (handle.synced) this.onEvent(ev);
      });
      this.handles.push(handle);
    }
    this.ctx.logger.info({ namespaces: s.namespaces.length > 0 ? s.namespaces : 'all', types: [...s.types], labelSelector: s.labelSelector || undefined }, 'following cluster events');
  }

  private release(): void {
    for (const h of this.handles.splice(0)) h.release();
  }

  private onEvent(ev: InformerEvent<KubeEvent>): void {
    const occurrences = newOccurrences(ev.type, ev.object, ev.old);
    if (occurrences === 0) return;
    const record = recordOf(ev.object, occurrences);
    const s = this.settings;
    if (!record || !s.types.has(record.type)) return;
    if (s.requirements.length === 0) {
      this.merger.add(record);
      return;
    }
    void this.labels.lookup(record.object).then((labels) => {
      // The settings may have changed meanwhile: the selector in force when the labels came decides.
      const now = this.settings;
      if (labels && now.types.has(record.type) && matchesLabels(now.requirements, labels)) this.merger.add(record);
    });
  }
}

/** The module's factory; `client` is agentk's client of its API server (for the involved objects' labels). */
export function clusterEventsModule(client: ApiServerClient, options: ClusterEventsOptions = {}): AgentkModuleFactory {
  return { name: 'cluster_events', create: (ctx) => new ClusterEventsAgent(ctx, client, options) };
}
