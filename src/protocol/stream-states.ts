/**
 * The state machine of one direction of a stream, as data: docs/protocol.md, "State machine of one
 * direction". Each stream has a sending direction (this side's) and a receiving direction (the
 * peer's); each moves only along the rows of STREAM_TRANSITIONS, through `advance`.
 *
 * Two kinds of wrong move, kept apart on purpose:
 * - a move of this side that the table does not allow is a bug here: `advance` throws INTERNAL;
 * - a frame of the peer that may not come in the receiving state is the peer's mistake: the table's
 *   refusal rows say which coded RESET answers it (`refusalOf`), and the state does not move.
 *
 * The lookups are flat arrays built once, so checking a frame costs an index and a comparison.
 */
import { TunnelError, type TunnelErrorCode } from './errors.js';

/** This side's direction of a stream. */
export const SendState = {
  /** Nothing sent yet: the head (OPEN or REPLY) is still to go. */
  Idle: 0,
  /** The head went out; data may follow. */
  Open: 1,
  /** END went out (a frame with fin). */
  Ended: 2,
  /** The stream was reset (by either side), refused, or its session closed. */
  Aborted: 3,
} as const;
export type SendState = (typeof SendState)[keyof typeof SendState];

/** What this side does on its direction. */
export const SendEvent = {
  /** Sends the head (OPEN or REPLY) without fin. */
  Head: 0,
  /** Sends the head with fin: the direction ends in the same frame. */
  HeadEnd: 1,
  /** Sends DATA without fin. */
  Data: 2,
  /** Sends DATA with fin (END, possibly bare). */
  End: 3,
  /** The stream is aborted: RESET sent or received, refused by a draining peer, session closed. */
  Abort: 4,
} as const;
export type SendEvent = (typeof SendEvent)[keyof typeof SendEvent];

/** The peer's direction of a stream, as this side receives it. */
export const RecvState = {
  /** A stream this side opened, before the peer's REPLY. */
  AwaitingHead: 0,
  /** The peer's head is known (its OPEN, or its REPLY); data may come. */
  Receiving: 1,
  /** The peer's END arrived. */
  Ended: 2,
  /** The stream was reset (by either side), refused, or its session closed. */
  Aborted: 3,
} as const;
export type RecvState = (typeof RecvState)[keyof typeof RecvState];

/** What arrives on the peer's direction (OPEN is not an event: it creates the stream, Receiving). */
export const RecvEvent = {
  /** The peer's REPLY. */
  Head: 0,
  /** A DATA frame, with or without fin (its fin is a separate End). */
  Data: 1,
  /** The peer's END (fin on an OPEN, REPLY or DATA frame). */
  End: 2,
  /** The stream is aborted, as for SendEvent.Abort. */
  Abort: 3,
} as const;
export type RecvEvent = (typeof RecvEvent)[keyof typeof RecvEvent];

/** An allowed move. */
export interface Transition<S extends number, E extends number> {
  readonly from: S;
  readonly on: E;
  readonly to: S;
}

/** A peer frame that may not come in this state, and the RESET of the stream that answers it. */
export interface Refusal<S extends number, E extends number> {
  readonly from: S;
  readonly on: E;
  readonly code: TunnelErrorCode;
  /** Goes on the wire in the RESET frame. */
  readonly message: string;
}

/**
 * The one table of both directions. A (state, event) pair in neither the allowed rows nor the
 * refusals cannot happen unless this side has a bug.
 */
export const STREAM_TRANSITIONS = {
  send: {
    allowed: [
      { from: SendState.Idle, on: SendEvent.Head, to: SendState.Open },
      { from: SendState.Idle, on: SendEvent.HeadEnd, to: SendState.Ended },
      { from: SendState.Open, on: SendEvent.Data, to: SendState.Open },
      { from: SendState.Open, on: SendEvent.End, to: SendState.Ended },
      { from: SendState.Idle, on: SendEvent.Abort, to: SendState.Aborted },
      { from: SendState.Open, on: SendEvent.Abort, to: SendState.Aborted },
      { from: SendState.Ended, on: SendEvent.Abort, to: SendState.Aborted },
      // Abort is allowed in every state: a closing session aborts whatever is left, and must close
      // even when a bug left a stream aborted but still in the table.
      { from: SendState.Aborted, on: SendEvent.Abort, to: SendState.Aborted },
    ],
    refused: [],
  },
  recv: {
    allowed: [
      { from: RecvState.AwaitingHead, on: RecvEvent.Head, to: RecvState.Receiving },
      { from: RecvState.Receiving, on: RecvEvent.Data, to: RecvState.Receiving },
      { from: RecvState.Receiving, on: RecvEvent.End, to: RecvState.Ended },
      { from: RecvState.AwaitingHead, on: RecvEvent.Abort, to: RecvState.Aborted },
      { from: RecvState.Receiving, on: RecvEvent.Abort, to: RecvState.Aborted },
      { from: RecvState.Ended, on: RecvEvent.Abort, to: RecvState.Aborted },
      { from: RecvState.Aborted, on: RecvEvent.Abort, to: RecvState.Aborted },
    ],
    refused: [
      { from: RecvState.AwaitingHead, on: RecvEvent.Data, code: 'PROTOCOL_ERROR', message: 'DATA before REPLY' },
      { from: RecvState.Ended, on: RecvEvent.Data, code: 'STREAM_CLOSED', message: 'DATA after END' },
      { from: RecvState.Receiving, on: RecvEvent.Head, code: 'PROTOCOL_ERROR', message: 'unexpected REPLY' },
      { from: RecvState.Ended, on: RecvEvent.Head, code: 'PROTOCOL_ERROR', message: 'unexpected REPLY' },
    ],
  },
} as const satisfies {
  send: { allowed: readonly Transition<SendState, SendEvent>[]; refused: readonly Refusal<SendState, SendEvent>[] };
  recv: { allowed: readonly Transition<RecvState, RecvEvent>[]; refused: readonly Refusal<RecvState, RecvEvent>[] };
};

/** One direction's half of the table, compiled into flat lookups indexed by state × events + event. */
export interface StateMachine<S extends number, E extends number> {
  readonly name: string;
  /** Events per state: the stride of the lookups. */
  readonly width: number;
  readonly stateNames: readonly string[];
  readonly eventNames: readonly string[];
  /** The next state, or -1 where the move is not allowed. */
  readonly next: Int8Array;
  /** The answer to a peer frame that may not come, or null. */
  readonly refusals: ReadonlyArray<Refusal<S, E> | null>;
}

function compile<S extends number, E extends number>(
  name: string,
  states: Record<string, S>,
  events: Record<string, E>,
  half: { allowed: readonly Transition<S, E>[]; refused: readonly Refusal<S, E>[] },
): StateMachine<S, E> {
  const stateNames = namesByValue(states);
  const eventNames = namesByValue(events);
  const width = eventNames.length;
  const next = new Int8Array(stateNames.length * width).fill(-1);
  const refusals: Array<Refusal<S, E> | null> = new Array<Refusal<S, E> | null>(next.length).fill(null);
  for (const t of half.allowed) next[t.from * width + t.on] = t.to;
  for (const r of half.refused) refusals[r.from * width + r.on] = r;
  return { name, width, stateNames, eventNames, next, refusals };
}

/** Names indexed by their value; the values must be 0..n-1. */
function namesByValue(values: Record<string, number>): string[] {
  const names: string[] = [];
  for (const [name, value] of Object.entries(values)) names[value] = name;
  return names;
}

export const SEND_MACHINE = compile('send', SendState, SendEvent, STREAM_TRANSITIONS.send);
export const RECV_MACHINE = compile('receive', RecvState, RecvEvent, STREAM_TRANSITIONS.recv);

/**
 * The state after `event`; throws TunnelError INTERNAL when the table does not allow the move (a bug
 * of this side: peer frames are checked with `refusalOf` first). `streamId` is for the message only.
 */
export function advance<S extends number, E extends number>(machine: StateMachine<S, E>, from: S, event: E, streamId: number): S {
  const to = machine.next[from * machine.width + event]!;
  if (to < 0) {
    throw new TunnelError('INTERNAL', `stream ${streamId}: ${machine.eventNames[event]} is not allowed in ${machine.name} state ${machine.stateNames[from]}`);
  }
  return to as S;
}

/** How to answer a peer frame that may not come in state `from`; null when the table allows it (or has no word on it). */
export function refusalOf<S extends number, E extends number>(machine: StateMachine<S, E>, from: S, event: E): Refusal<S, E> | null {
  return machine.refusals[from * machine.width + event]!;
}
