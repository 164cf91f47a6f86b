/** Maps the `agent.tunnel` configuration section to protocol session limits and tuning. */
import type { SessionLimits, SessionTuning } from '../../protocol/limits.js';
import type { TunnelConfig } from './config.js';

export function sessionOptionsFrom(t: TunnelConfig): { limits: SessionLimits; tuning: Partial<SessionTuning> } {
  return {
    limits: {
      maxFrameSize: t.max_frame_size,
      maxStreams: t.max_streams,
      maxHeaderSize: t.max_header_size,
      initialWindow: t.initial_window,
    },
    tuning: {
      maxWindow: t.max_window,
      chunkSize: t.chunk_size,
      maxSessionBuffer: t.max_session_buffer,
      pingIntervalMs: t.ping_interval,
      handshakeTimeoutMs: t.handshake_timeout,
      drainGraceMs: t.drain_grace,
    },
  };
}
