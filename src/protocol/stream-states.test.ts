/**
 * The transition table of a stream's two directions, checked against docs/protocol.md ("State
 * machine of one direction"), written out here by hand so that a change to the table must be a
 * change to this list too: every allowed move is taken, every other move of this side throws
 * INTERNAL, and every peer frame that may not come has the coded RESET the document gives it.
 */
import { TunnelError } from './errors.js';
import { createMemoryTransportPair } from './memory-transport.js';
import { Session } from './session.js';
import {
  RECV_MACHINE,
  RecvEvent,
  RecvState,
  SEND_MACHINE,
  STREAM_TRANSITIONS,
  SendEvent,
  SendState,
  advance,
  refusalOf,
  type StateMachine,
} from './stream-states.js';
import { entryOf } from './testing/stream-internals.js';

type Row = [from: string, event: string, to: string];

/** docs/protocol.md, the sending side of a direction (RESET and session close are "Abort"). */
const SEND_ALLOWED: Row[] = [
  ['Idle', 'Head', 'Open'], // OPEN or REPLY, fin=false
  ['Idle', 'HeadEnd', 'Ended'], // OPEN or REPLY, fin=true
  ['Open', 'Data', 'Open'], // DATA, fin=false, within credit
  ['Open', 'End', 'Ended'], // DATA, fin=true (END)
  ['Idle', 'Abort', 'Aborted'],
  ['Open', 'Abort', 'Aborted'],
  ['Ended', 'Abort', 'Aborted'],
  ['Aborted', 'Abort', 'Aborted'], // any state: a closing session aborts whatever is left
];

/** docs/protocol.md, the receiving side of a direction (OPEN creates an acceptor's stream in Receiving). */
const RECV_ALLOWED: Row[] = [
  ['AwaitingHead', 'Head', 'Receiving'], // REPLY
  ['Receiving', 'Data', 'Receiving'], // bytes delivered
  ['Receiving', 'End', 'Ended'], // fin=true
  ['AwaitingHead', 'Abort', 'Aborted'],
  ['Receiving', 'Abort', 'Aborted'],
  ['Ended', 'Abort', 'Aborted'],
  ['Aborted', 'Abort', 'Aborted'],
];

/** docs/protocol.md: peer frames that reset the stream, with the RESET's code and message. */
const RECV_REFUSED: Array<[from: string, event: string, code: string, message: string]> = [
  ['AwaitingHead', 'Data', 'PROTOCOL_ERROR', 'DATA before REPLY'],
  ['Ended', 'Data', 'STREAM_CLOSED', 'DATA after END'],
  ['Receiving', 'Head', 'PROTOCOL_ERROR', 'unexpected REPLY'],
  ['Ended', 'Head', 'PROTOCOL_ERROR', 'unexpected REPLY'],
];

function pairs<S extends number, E extends number>(states: Record<string, S>, events: Record<string, E>): Array<[string, S, string, E]> {
  const all: Array<[string, S, string, E]> = [];
  for (const [sn, s] of Object.entries(states)) for (const [en, e] of Object.entries(events)) all.push([sn, s, en, e]);
  return all;
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected the move to throw, but it was allowed');
}

function checkMachine<S extends number, E extends number>(
  machine: StateMachine<S, E>,
  states: Record<string, S>,
  events: Record<string, E>,
  allowed: Row[],
) {
  const key = (from: string, event: string) => `${from} --${event}-->`;
  const allowedTo = new Map(allowed.map(([from, event, to]) => [key(from, event), to]));

  test.each(allowed)('%s on %s moves to %s', (from, event, to) => {
    expect(advance(machine, states[from]!, events[event]!, 1)).toBe(states[to]);
  });

  test('every other move of this side throws a coded INTERNAL error naming the stream, the state and the event', () => {
    const illegal = pairs(states, events).filter(([sn, , en]) => !allowedTo.has(key(sn, en)));
    expect(illegal.length).toBeGreaterThan(0);
    for (const [sn, s, en, e] of illegal) {
      const err = thrown(() => advance(machine, s, e, 7));
      expect(err).toBeInstanceOf(TunnelError);
      expect(err).toMatchObject({ code: 'INTERNAL', remote: false });
      expect((err as Error).message).toBe(`stream 7: ${en} is not allowed in ${machine.name} state ${sn}`);
    }
  });

  test('Aborted is final: nothing moves a direction out of it, and only Abort is allowed there', () => {
    for (const [en, e] of Object.entries(events)) {
      if (en === 'Abort') expect(advance(machine, states.Aborted!, e, 1)).toBe(states.Aborted);
      else expect(() => advance(machine, states.Aborted!, e, 1)).toThrow(TunnelError);
    }
  });

  test('Abort is allowed in every state', () => {
    for (const s of Object.values(states)) expect(advance(machine, s, events.Abort!, 1)).toBe(states.Aborted);
  });
}

describe('the sending direction', () => {
  checkMachine(SEND_MACHINE, SendState, SendEvent, SEND_ALLOWED);

  test('has no refusals: every frame it sends is its own doing', () => {
    expect(STREAM_TRANSITIONS.send.refused).toEqual([]);
    for (const [, s, , e] of pairs(SendState, SendEvent)) expect(refusalOf(SEND_MACHINE, s, e)).toBeNull();
  });

  test('the table holds exactly the rows of the document', () => {
    const rows = STREAM_TRANSITIONS.send.allowed.map((t) => [SEND_MACHINE.stateNames[t.from], SEND_MACHINE.eventNames[t.on], SEND_MACHINE.stateNames[t.to]]);
    expect(rows).toEqual(SEND_ALLOWED);
  });
});

describe('the receiving direction', () => {
  checkMachine(RECV_MACHINE, RecvState, RecvEvent, RECV_ALLOWED);

  test.each(RECV_REFUSED)('a peer frame %s on %s is refused with a RESET %s (%s)', (from, event, code, message) => {
    expect(refusalOf(RECV_MACHINE, RecvState[from as keyof typeof RecvState], RecvEvent[event as keyof typeof RecvEvent])).toMatchObject({ code, message });
    // Refused is not allowed: the state must not move on such a frame.
    expect(() => advance(RECV_MACHINE, RecvState[from as keyof typeof RecvState], RecvEvent[event as keyof typeof RecvEvent], 1)).toThrow(TunnelError);
  });

  test('allowed moves are never refused, and no other pair is', () => {
    const refused = new Set(RECV_REFUSED.map(([from, event]) => `${from}/${event}`));
    for (const [sn, s, en, e] of pairs(RecvState, RecvEvent)) {
      if (!refused.has(`${sn}/${en}`)) expect(refusalOf(RECV_MACHINE, s, e)).toBeNull();
    }
  });

  test('the table holds exactly the rows of the document', () => {
    const rows = STREAM_TRANSITIONS.recv.allowed.map((t) => [RECV_MACHINE.stateNames[t.from], RECV_MACHINE.eventNames[t.on], RECV_MACHINE.stateNames[t.to]]);
    expect(rows).toEqual(RECV_ALLOWED);
    const refusals = STREAM_TRANSITIONS.recv.refused.map((r) => [RECV_MACHINE.stateNames[r.from], RECV_MACHINE.eventNames[r.on], r.code, r.message]);
    expect(refusals).toEqual(RECV_REFUSED);
  });
});

describe('inside a session', () => {
  test('a frame meeting a stream in a state the table has no word on (a bug of this side) closes the session with INTERNAL, not silence', async () => {
    const [a, b] = createMemoryTransportPair();
    const server = new Session(b, { role: 'server' });
    const client = new Session(a, { role: 'client' });
    server.on('stream', (s) => s.reply({ status: 200 }));
    const closed = new Promise<TunnelError | null>((resolve) => client.once('close', resolve));
    await client.ready;
    const stream = client.openStream({ path: '/x' });
    stream.on('error', () => undefined);
    // Corrupts the bookkeeping as a bug would: the REPLY on its way now meets a direction the table calls final.
    entryOf(stream).recv = RecvState.Aborted;
    const err = await closed;
    expect(err).toBeInstanceOf(TunnelError);
    expect(err).toMatchObject({ code: 'INTERNAL', message: `stream ${stream.id}: Head is not allowed in receive state Aborted` });
    server.close();
  });
});
