/** The cluster events kas keeps per agent and serves on the API (agent.events). */
import { z } from 'zod';
import { configPart, type ConfigOf } from '../configuration/config-part.js';
import { duration, size } from '../configuration/fields.js';

export const clusterEventsConfig = configPart('agent.events', {
  enabled: z.boolean({ error: 'expected true or false' }).default(true),
  ring_size: z.number({ error: 'expected a number of events' }).int().min(1).max(100_000).default(200),
  max_memory: size(64 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024 * 1024),
  rate_limit: z.number({ error: 'expected events per second' }).positive().max(1_000_000).default(50),
  burst: z.number({ error: 'expected a number of events' }).int().min(1).max(1_000_000).default(200),
  watch_buffer: size(256 * 1024, 16 * 1024, 1024 * 1024 * 1024),
  watch_heartbeat: duration('15s'),
  max_watchers: z.number({ error: 'expected a number of watch requests' }).int().min(0).max(1_000_000).default(1000),
  redis_ttl: duration('24h'),
}, `enabled: true                 # cluster events from agentk, agent connects and disconnects
ring_size: 200                # events kept per agent
max_memory: 67108864          # bytes (64 MiB) for all agents' events; the busiest agents' oldest go first
rate_limit: 50                # events per second kas takes from one agent (above: dropped, counted)
burst: 200
watch_buffer: 262144          # bytes waiting for one watch request; a watcher that falls behind is cut
watch_heartbeat: 15s
max_watchers: 1000            # open watch requests on this kas
redis_ttl: 24h                # with a redis section: how long an agent's event history stays in Redis`);

export type ClusterEventsConfig = ConfigOf<[typeof clusterEventsConfig]>['agent']['events'];
