/**
 * agentk's end of the `flux_git_push` stream: keeps one open towards kas (on any session whose kas
 * serves the type), sends the list of followed projects whenever it changes and at every (re)open,
 * and hands each push to `onPush`. A stream that closes or fails is reopened with backoff; one on
 * which nothing (not even a heartbeat) arrived for `stallFactor` heartbeat intervals is presumed
 * stalled, reset and reopened, so pushes are never silently lost until a restart.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  decodeFluxDownMessage,
  decodeFluxReplyHead,
  encodeFluxMessage,
  encodeFluxOpenHead,
  FluxMessageReader,
  type FluxSubscribed,
} from '../../protocol/flux.js';
import { TunnelError } from '../../protocol/errors.js';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import { Backoff, type BackoffOptions } from '../tunnel/backoff.js';
import type { KasStreams } from '../tunnel/kas-streams.js';
import type { FluxAgentMetrics } from './metrics.js';

export interface FluxPushClientOptions {
  kas: Pick<KasStreams, 'open' | 'servedBy'>;
  logger: Logger;
  metrics: FluxAgentMetrics;
  onPush: (project: string) => void;
  onSubscribed?: (message: FluxSubscribed) => void;
  backoff?: Partial<BackoffOptions>;
  /** Missing heartbeats that mean a stalled stream (default 3). */
  stallFactor?: number;
  /** How long kas may take to answer the OPEN, ms (default 30 s). */
  replyTimeoutMs?: number;
}

export class FluxPushClient {
  private projects: string[] = [];
  private stream: TunnelStream | null = null;
  private readonly abort = new AbortController();
  private running: Promise<void> | null = null;
  private loggedNotServed = false;

  constructor(private readonly o: FluxPushClientOptions) {}

  /** Sets the followed projects (sent at once when a stream is open, else at the next open). */
  setProjects(projects: readonly string[]): void {
    const next = [...projects].sort();
    if (next.length === this.projects.length && next.every((p, i) => p === this.projects[i])) return;
    this.projects = next;
    this.sendSubscription();
  }

  start(): void {
    this.running ??= this.run();
  }

  async stop(): Promise<void> {
    // Aborting resets the open stream (kas forgets the subscription) and ends the loop.
    this.abort.abort(new Error('flux is stopping'));
    await this.running;
  }

  /** Whether a stream is open now (tests). */
  get connected(): boolean {
    return this.stream !== null;
  }

  private sendSubscription(): void {
    const s = this.stream;
    if (!s || s.destroyed || s.writableEnded) return;
    s.write(encodeFluxMessage({ type: 'subscribe', projects: this.projects }));
  }

  private async run(): Promise<void> {
    const backoff = new Backoff(this.o.backoff);
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const started = Date.now();
      let reason: 'stalled' | 'closed' | 'error';
      try {
        reason = await this.once(signal);
      } catch (err) {
        if (signal.aborted) break;
        reason = 'error';
        this.o.logger.warn({ err }, 'flux_git_push stream failed; reopening it');
      }
      if (signal.aborted) break;
      this.o.metrics.streamRestarts.inc({ reason });
      backoff.connectionEnded(Date.now() - started);
      try {
        await sleep(backoff.next(), undefined, { signal });
      } catch {
        break;
      }
    }
  }

  /** One stream, from open to end; resolves with why it ended. */
  private async once(signal: AbortSignal): Promise<'stalled' | 'closed' | 'error'> {
    if (!this.loggedNotServed && this.o.kas.servedBy('flux_git_push') === false) {
      this.loggedNotServed = true;
      this.o.logger.info('kas does not serve flux_git_push (an older kas?): waiting for one that does');
    }
    const stream = await this.o.kas.open(encodeFluxOpenHead(), { signal });
    let replyTimer: NodeJS.Timeout | null = null;
    const reply = await Promise.race([
      replyOf(stream),
      new Promise<never>((_, reject) => {
        replyTimer = setTimeout(() => reject(new Error('kas did not answer the flux_git_push stream')), this.o.replyTimeoutMs ?? 30_000);
      }),
    ]).finally(() => {
      if (replyTimer) clearTimeout(replyTimer);
    }).catch((err: unknown) => {
      stream.reset('CANCELLED', 'no reply');
      throw err;
    });
    let heartbeatMs: number;
    try {
      heartbeatMs = decodeFluxReplyHead(reply).heartbeatMs;
    } catch (err) {
      stream.reset('PROTOCOL_ERROR', (err as Error).message);
      throw err;
    }
    if (signal.aborted) {
      stream.end();
      return 'closed';
    }
    this.stream = stream;
    this.o.logger.info({ heartbeatMs }, 'flux_git_push stream open');
    this.sendSubscription();
    const stallMs = heartbeatMs * (this.o.stallFactor ?? 3);
    const reader = new FluxMessageReader();
    return new Promise((resolve) => {
      let outcome: 'stalled' | 'closed' | 'error' = 'closed';
      let watchdog = setTimeout(stalled, stallMs);
      function stalled() {
        outcome = 'stalled';
        stream.reset('CANCELLED', 'no heartbeat from kas');
      }
      const onAbort = () => stream.reset('CANCELLED', 'agentk is stopping');
      signal.addEventListener('abort', onAbort, { once: true });
      const finish = () => {
        signal.removeEventListener('abort', onAbort);
        clearTimeout(watchdog);
        if (this.stream === stream) this.stream = null;
        resolve(outcome);
      };
      stream.on('data', (chunk: Buffer) => {
        clearTimeout(watchdog);
        watchdog = setTimeout(stalled, stallMs);
        try {
          for (const value of reader.push(chunk)) {
            const message = decodeFluxDownMessage(value);
            if (message.type === 'push') {
              this.o.metrics.notifications.inc();
              this.o.onPush(message.project);
            } else if (message.type === 'subscribed') {
              if (message.refused.length > 0) this.o.logger.warn({ refused: message.refused.slice(0, 20) }, 'kas refused some Flux projects');
              this.o.onSubscribed?.(message);
            }
          }
        } catch (err) {
          outcome = 'error';
          const text = err instanceof TunnelError ? err.message : 'invalid flux_git_push data';
          this.o.logger.warn({ err: text }, 'kas sent invalid flux_git_push data: resetting the stream');
          stream.reset('PROTOCOL_ERROR', text);
        }
      });
      stream.on('end', () => {
        stream.end();
        finish();
      });
      stream.on('close', finish);
      stream.on('error', () => {
        if (outcome === 'closed') outcome = 'error';
        finish();
      });
      if (stream.destroyed) finish();
    });
  }
}
