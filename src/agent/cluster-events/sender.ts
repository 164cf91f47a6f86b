/**
 * Keeps one `agent_events` stream open towards kas (reopened with backoff after it is lost) and
 * writes what the merger has waiting, in batches: at once when nothing was written for a flush
 * interval (a lone event goes out without delay), else at the end of the interval (a burst goes out
 * in few batches, its repeats merged). Writes follow the stream's
 * backpressure: while kas does not take more, records wait in the merger (bounded there). Delivery
 * is at most once: records written to a stream that then fails are not sent again.
 */
import { batchBodyBytes, encodeAgentEventsHead, encodeEventBatch, encodeEventRecord, MAX_EVENT_BATCH_BYTES, MAX_EVENT_BATCH_RECORDS } from '../../protocol/cluster-events.js';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import type { Logger } from '../../shared/logger.js';
import { Backoff, type BackoffOptions } from '../tunnel/backoff.js';
import type { KasStreams } from '../tunnel/kas-streams.js';
import type { EventMerger } from './merger.js';
import type { ClusterEventsAgentMetrics } from './metrics.js';

export const DEFAULT_FLUSH_MS = 250;

export interface EventSenderOptions {
  kas: KasStreams;
  merger: EventMerger;
  metrics: ClusterEventsAgentMetrics;
  logger: Logger;
  flushMs?: number;
  backoff?: Partial<BackoffOptions>;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

export class EventSender {
  private readonly abort = new AbortController();
  private stream: TunnelStream | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastFlush = 0;
  private running: Promise<void> | null = null;
  private loggedNotServed = false;

  constructor(private readonly o: EventSenderOptions) {}

  start(): void {
    this.running = this.run();
  }

  /** A record is waiting: write it now, or at the end of the current flush interval. */
  schedule(): void {
    if (this.timer || this.abort.signal.aborted) return;
    const wait = Math.max(0, this.lastFlush + (this.o.flushMs ?? DEFAULT_FLUSH_MS) - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, wait);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.abort.abort(new Error('cluster events stopped'));
    if (this.timer) clearTimeout(this.timer);
    this.stream?.end();
    this.stream = null;
    await this.running;
  }

  /** Writes the waiting records if a stream is open and takes them. */
  flush(): void {
    const s = this.stream;
    if (!s || s.destroyed || s.writableNeedDrain || this.o.merger.queued === 0) return;
    this.lastFlush = Date.now();
    while (this.o.merger.queued > 0) {
      const records = this.o.merger.take(MAX_EVENT_BATCH_RECORDS).map(encodeEventRecordSafe).filter((r): r is Uint8Array => r !== null);
      // A batch of the largest records could pass the batch cap: split it.
      let batch: Uint8Array[] = [];
      const sizes: number[] = [];
      const write = (): boolean => {
        const ok = s.write(encodeEventBatch(batch));
        this.o.metrics.sent.inc(batch.length);
        batch = [];
        sizes.length = 0;
        return ok;
      };
      let ok = true;
      for (const r of records) {
        if (batch.length > 0 && batchBodyBytes([...sizes, r.byteLength]) > MAX_EVENT_BATCH_BYTES) ok = write() && ok;
        batch.push(r);
        sizes.push(r.byteLength);
      }
      if (batch.length > 0) ok = write() && ok;
      if (!ok) return;
    }
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    const backoff = new Backoff(this.o.backoff);
    while (!signal.aborted) {
      if (this.o.kas.servedBy('agent_events') === false && !this.loggedNotServed) {
        this.loggedNotServed = true;
        this.o.logger.info('the kas this agent is connected to does not take cluster events; waiting for one that does');
      }
      let stream: TunnelStream;
      try {
        stream = await this.o.kas.open(encodeAgentEventsHead(), { signal });
        await replyOf(stream);
      } catch (err) {
        if (signal.aborted) return;
        this.o.logger.debug({ err }, 'could not open the cluster events stream; retrying');
        await sleep(backoff.next(), signal);
        continue;
      }
      const openedAt = Date.now();
      this.stream = stream;
      // kas sends nothing but its end; reading it lets the stream close once both directions ended.
      stream.resume();
      stream.on('drain', () => this.flush());
      this.flush();
      const err = await new Promise<Error | null>((resolve) => {
        stream.once('error', (e: Error) => resolve(e));
        stream.once('close', () => resolve(null));
      });
      if (this.stream === stream) this.stream = null;
      if (signal.aborted) return;
      if (stream.writableLength > 0) this.o.metrics.dropped.inc({ reason: 'stream_lost' });
      this.o.logger.info({ err }, 'the cluster events stream to kas ended; opening another');
      backoff.connectionEnded(Date.now() - openedAt);
      await sleep(backoff.next(), signal);
    }
  }
}

function encodeEventRecordSafe(r: Parameters<typeof encodeEventRecord>[0]): Uint8Array | null {
  try {
    return encodeEventRecord(r);
  } catch {
    return null;
  }
}
