/**
 * Test support: the session's own bookkeeping of its streams, for tests whose invariants are about
 * it (credit never negative, windows, what waits to be framed). Reaches into private fields, so it
 * lives here, in one place, and never in production code.
 */
import type { Session } from '../session.js';
import type { StreamEntry } from '../stream-entry.js';
import type { TunnelStream } from '../stream.js';

/** The session's entry of a stream (credit, queues, the states of its two directions). */
export function entryOf(stream: TunnelStream): StreamEntry {
  return (stream as unknown as { core: StreamEntry }).core;
}

/** The entries of the streams a session knows (not those still queued to open). */
export function knownEntries(session: Session): StreamEntry[] {
  return [...(session as unknown as { table: { byId: Map<number, StreamEntry> } }).table.byId.values()];
}
