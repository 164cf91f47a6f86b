/**
 * The transition table of a session's state, written out here by hand: every allowed move is taken,
 * every other move throws a coded INTERNAL error, and closed is final.
 */
import { TunnelError } from './errors.js';
import { SESSION_TRANSITIONS, nextSessionState, type SessionState } from './session-states.js';

const STATES: SessionState[] = ['handshaking', 'open', 'draining', 'closed'];

/** docs/protocol.md: the handshake opens a session, a GOAWAY drains an open one, any may close. */
const ALLOWED: Array<[from: SessionState, to: SessionState]> = [
  ['handshaking', 'open'],
  ['handshaking', 'closed'],
  ['open', 'draining'],
  ['open', 'closed'],
  ['draining', 'closed'],
];

test.each(ALLOWED)('a session may move from %s to %s', (from, to) => {
  expect(nextSessionState(from, to)).toBe(to);
});

test('every other move throws a coded INTERNAL error naming both states', () => {
  const allowed = new Set(ALLOWED.map(([from, to]) => `${from}>${to}`));
  let illegal = 0;
  for (const from of STATES) {
    for (const to of STATES) {
      if (allowed.has(`${from}>${to}`)) continue;
      illegal++;
      let err: unknown = null;
      try {
        nextSessionState(from, to);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TunnelError);
      expect(err).toMatchObject({ code: 'INTERNAL', message: `a session may not move from ${from} to ${to}` });
    }
  }
  expect(illegal).toBe(STATES.length * STATES.length - ALLOWED.length);
});

test('the table holds exactly these moves, and closed is final', () => {
  const rows = STATES.flatMap((from) => SESSION_TRANSITIONS[from].map((to) => [from, to]));
  expect(rows).toEqual(ALLOWED);
  expect(SESSION_TRANSITIONS.closed).toEqual([]);
});
