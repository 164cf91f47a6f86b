/**
 * `GET /api/v1/agents/{agent_id}/events` on the API for GitLab: an agent's events, newest first,
 * or (`watch=true`) a stream of its events as they come, NDJSON or server-sent events. A watcher
 * that does not read is cut once `watch_buffer` bytes wait for it; kas never buffers more for it.
 * docs/api.md describes the endpoint.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../../shared/logger.js';
import { apiError, oneId } from '../api/routes.js';
import type { StoredEvent } from './event-store.js';
import type { ClusterEventsHub } from './hub.js';
import type { ClusterEventsMetrics } from './metrics.js';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

export interface EventRoutesOptions {
  hub: ClusterEventsHub;
  metrics: ClusterEventsMetrics;
  logger: Logger;
  watchBuffer: number;
  heartbeatMs: number;
  maxWatchers: number;
}

interface Since {
  sinceId?: number;
  sinceTimeMs?: number;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;

/** `since`: an event id (digits) or an RFC 3339 time; null when it is neither. */
export function parseSince(raw: unknown): Since | null {
  if (raw === undefined) return {};
  if (typeof raw !== 'string') return null;
  if (/^\d{1,15}$/.test(raw)) return { sinceId: Number(raw) };
  if (!RFC3339.test(raw)) return null;
  const ms = Date.parse(raw);
  return Number.isNaN(ms) ? null : { sinceTimeMs: ms };
}

export function parseLimit(raw: unknown): number | null {
  if (raw === undefined) return DEFAULT_LIMIT;
  if (typeof raw !== 'string' || !/^\d{1,5}$/.test(raw)) return null;
  const n = Number(raw);
  return n >= 1 && n <= MAX_LIMIT ? n : null;
}

function parseWatch(raw: unknown): boolean | null {
  if (raw === undefined || raw === 'false' || raw === '0') return false;
  if (raw === 'true' || raw === '1') return true;
  return null;
}

export function eventRoutes(o: EventRoutesOptions): (app: FastifyInstance) => void {
  const open = new Set<() => void>();
  return (app) => {
    // Watches end before the server closes (it would wait for them otherwise).
    app.addHook('preClose', (done) => {
      for (const end of [...open]) end();
      done();
    });
    app.get('/api/v1/agents/:agent_id/events', async (req, reply) => {
      const agentId = oneId((req.params as Record<string, unknown>).agent_id);
      if (agentId === null) return apiError(reply, 400, 'BAD_REQUEST', 'agent_id must be a positive integer');
      const q = req.query as Record<string, unknown>;
      const since = parseSince(q.since);
      if (!since) return apiError(reply, 400, 'BAD_REQUEST', 'since must be an event id or an RFC 3339 time such as 2026-12-03T06:00:00Z');
      const watch = parseWatch(q.watch);
      if (watch === null) return apiError(reply, 400, 'BAD_REQUEST', 'watch must be true or false');
      if (watch) return watchEvents(req, reply, agentId, since, o, open);
      const limit = parseLimit(q.limit);
      if (limit === null) return apiError(reply, 400, 'BAD_REQUEST', `limit must be an integer from 1 to ${MAX_LIMIT}`);
      const events = await o.hub.list(agentId, { ...since, limit });
      return reply.type('application/json; charset=utf-8').send(`{"events":[${events.map((e) => e.json).join(',')}]}`);
    });
  };
}

async function watchEvents(req: FastifyRequest, reply: FastifyReply, agentId: number, since: Since, o: EventRoutesOptions, open: Set<() => void>): Promise<FastifyReply> {
  if (since.sinceTimeMs !== undefined) return apiError(reply, 400, 'BAD_REQUEST', 'a watch takes since as an event id, not a time');
  if (o.hub.watcherCount >= o.maxWatchers) {
    o.metrics.watchersCut.inc({ reason: 'limit' });
    return apiError(reply, 503, 'UNAVAILABLE', 'too many watch requests on this kas; try again later');
  }
  const sse = /\btext\/event-stream\b/.test(req.headers.accept ?? '');
  let sinceId = since.sinceId;
  const lastEventId = req.headers['last-event-id'];
  if (sinceId === undefined && sse && typeof lastEventId === 'string' && /^\d{1,15}$/.test(lastEventId)) sinceId = Number(lastEventId);

  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'Content-Type': sse ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
    'Cache-Control': 'no-cache',
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders();
  o.metrics.watchers.inc();
  let ended = false;
  let unwatch: (() => void) | null = null;
  const end = (): void => {
    if (ended) return;
    ended = true;
    open.delete(endForShutdown);
    clearInterval(heartbeat);
    unwatch?.();
    o.metrics.watchers.dec();
    res.end();
  };
  const endForShutdown = (): void => {
    o.metrics.watchersCut.inc({ reason: 'shutdown' });
    end();
  };
  open.add(endForShutdown);
  const write = (text: string): void => {
    if (ended) return;
    res.write(text);
    if (res.writableLength > o.watchBuffer) {
      o.metrics.watchersCut.inc({ reason: 'slow' });
      o.logger.info({ agentId, buffered: res.writableLength }, 'cluster events watcher does not keep up: cut');
      end();
      res.destroy();
    }
  };
  const send = (e: StoredEvent): void => write(sse ? `id: ${e.id}\nevent: cluster_event\ndata: ${e.json}\n\n` : `${e.json}\n`);
  const heartbeat = setInterval(() => write(sse ? ': heartbeat\n\n' : '\n'), o.heartbeatMs);
  heartbeat.unref();
  res.on('close', end);
  const stop = await o.hub.watch(agentId, send, sinceId);
  if (ended) stop();
  else unwatch = stop;
  return reply;
}
