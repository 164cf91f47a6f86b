/** The keys of the Flux git-push feature (kas half). */
import { z } from 'zod';
import { MAX_FLUX_HEARTBEAT_MS, MAX_FLUX_PROJECTS, MIN_FLUX_HEARTBEAT_MS } from '../../protocol/flux.js';
import { configPart, type ConfigOf } from '../configuration/config-part.js';
import { duration } from '../configuration/fields.js';

export const fluxConfig = configPart(
  'agent.flux',
  {
    enabled: z.boolean().default(true),
    heartbeat_interval: duration('30s').refine((ms) => ms >= MIN_FLUX_HEARTBEAT_MS && ms <= MAX_FLUX_HEARTBEAT_MS, { message: `must be between ${MIN_FLUX_HEARTBEAT_MS} ms and ${MAX_FLUX_HEARTBEAT_MS / 60_000} min` }),
    max_projects_per_stream: z.number().int().min(1).max(MAX_FLUX_PROJECTS).default(1000),
    project_access_cache_ttl: duration('5m'),
    project_access_refusal_cache_ttl: duration('1m'),
  },
  `enabled: true
heartbeat_interval: 30s
max_projects_per_stream: 1000
project_access_cache_ttl: 5m
project_access_refusal_cache_ttl: 1m`,
);

export type FluxConfig = ConfigOf<[typeof fluxConfig]>['agent']['flux'];
