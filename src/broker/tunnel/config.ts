/** The agent listener and the limits and tuning of the tunnel sessions agents open to it. */
import { z } from 'zod';
import { configPart, type ConfigOf } from '../configuration/config-part.js';
import { address, duration, size, tlsFiles, tlsPair } from '../configuration/fields.js';

const tunnel = z
  .strictObject({
    max_frame_size: size(1024 * 1024, 4096, 64 * 1024 * 1024),
    max_streams: z.number().int().min(1).max(1_000_000).default(1024),
    max_header_size: size(64 * 1024, 1024, 1024 * 1024),
    initial_window: size(256 * 1024, 16 * 1024, 0x7fffffff),
    max_window: size(16 * 1024 * 1024, 16 * 1024, 0x7fffffff),
    chunk_size: size(64 * 1024, 1024, 1024 * 1024),
    max_session_buffer: size(64 * 1024 * 1024, 64 * 1024, 16 * 1024 * 1024 * 1024),
    max_process_buffer: size(512 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024 * 1024),
    ping_interval: duration('20s'),
    handshake_timeout: duration('10s'),
    drain_grace: duration('30s'),
  })
  .prefault({})
  .superRefine((t, ctx) => {
    if (t.max_header_size > t.max_frame_size - 64) ctx.addIssue({ code: 'custom', path: ['max_header_size'], message: 'must be smaller than max_frame_size' });
    if (t.chunk_size > t.max_frame_size - 64) ctx.addIssue({ code: 'custom', path: ['chunk_size'], message: 'must be smaller than max_frame_size' });
    if (t.max_window < t.initial_window) ctx.addIssue({ code: 'custom', path: ['max_window'], message: 'must be at least initial_window' });
  });

export const agentListenerConfig = configPart('agent', {
  listen: z
    .strictObject({
      address: address('127.0.0.1:8150'),
      ...tlsFiles,
      max_connection_age: duration('2h'),
      connections_per_token_per_minute: z.number().int().min(1).default(40000),
      headers_timeout: duration('10s'),
    })
    .prefault({})
    .superRefine(tlsPair),
  tunnel,
}, `listen:
  address: 127.0.0.1:8150
  # certificate_file: /etc/kas/agent.crt    # with key_file: wss:// (else ws://, behind a TLS ingress)
  # key_file: /etc/kas/agent.key
  max_connection_age: 2h
  connections_per_token_per_minute: 40000
  headers_timeout: 10s
tunnel:
  max_frame_size: 1048576
  max_streams: 1024
  max_header_size: 65536
  initial_window: 262144
  max_window: 16777216
  chunk_size: 65536
  max_session_buffer: 67108864
  max_process_buffer: 536870912
  ping_interval: 20s
  handshake_timeout: 10s
  drain_grace: 30s`);

export type TunnelConfig = z.output<typeof tunnel>;
export type AgentListenConfig = ConfigOf<[typeof agentListenerConfig]>['agent']['listen'];
