/**
 * Endpoints features add to the API for GitLab. A feature module registers its routes while it is
 * created (`ctx.services.get(API_ROUTES).add((app) => app.get('/api/v1/...', handler))`); the api
 * module puts them on its server after the built-in ones, behind the same JWT check and error
 * format. When the API is off (no authentication_secret_file) the routes are simply never served.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { serviceKey } from '../services.js';

/** Adds routes to the API's fastify instance. Runs once, when the api module is created. */
export type ApiRouteRegistration = (app: FastifyInstance) => void;

export class ApiRoutes {
  private readonly registrations: ApiRouteRegistration[] = [];

  add(registration: ApiRouteRegistration): void {
    this.registrations.push(registration);
  }

  /** Every registration, in the order of the modules. */
  get all(): readonly ApiRouteRegistration[] {
    return this.registrations;
  }
}

export const API_ROUTES = serviceKey<ApiRoutes>('api_routes');

/** The API's error answer: `{"error": {"code", "message"}}` with the status. */
export function apiError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).send({ error: { code, message } });
}

const MAX_IDS = 1000;

/** Parses repeated integer query parameters (`?agent_id=1&agent_id=2`); null when any is not an id. */
export function ids(raw: unknown): number[] | null {
  const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  if (list.length > MAX_IDS) return null;
  const out: number[] = [];
  for (const v of list) {
    if (typeof v !== 'string' || !/^\d{1,18}$/.test(v)) return null;
    out.push(Number(v));
  }
  return out;
}

/** Parses one positive integer id of a path or query parameter; null when it is not one. */
export function oneId(raw: unknown): number | null {
  if (typeof raw !== 'string' || !/^\d{1,18}$/.test(raw)) return null;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}
