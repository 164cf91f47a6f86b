/**
 * The states of a session and the moves between them, as data. A session starts handshaking; the
 * handshake opens it; a GOAWAY (sent or received) makes an open session draining; it ends closed,
 * from any state. Only the session moves its state, through `nextSessionState`, which refuses a move
 * the table does not list: that is a bug of this side (peer frames never move the state directly,
 * they go through the handshake, GOAWAY or a coded close).
 */
import { TunnelError } from './errors.js';

export type SessionState = 'handshaking' | 'open' | 'draining' | 'closed';

/** For each state, the states it may move to. */
export const SESSION_TRANSITIONS: Readonly<Record<SessionState, readonly SessionState[]>> = Object.freeze({
  handshaking: ['open', 'closed'],
  open: ['draining', 'closed'],
  draining: ['closed'],
  closed: [],
});

/** Returns `to` when the table allows the move from `from`; throws TunnelError INTERNAL otherwise. */
export function nextSessionState(from: SessionState, to: SessionState): SessionState {
  if (!SESSION_TRANSITIONS[from].includes(to)) throw new TunnelError('INTERNAL', `a session may not move from ${from} to ${to}`);
  return to;
}
