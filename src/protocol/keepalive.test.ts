/**
 * Keepalive on its own, with a fake clock: when PINGs go out (the first, the interval, the one RTT
 * probe window growth asks for), what the base RTT is made of, and when an unanswered PING closes
 * the session.
 */
import { jest } from '@jest/globals';
import type { TunnelError } from './errors.js';
import { decodeFrame, FrameKind } from './frames.js';
import { Keepalive } from './keepalive.js';

interface Harness {
  keepalive: Keepalive;
  /** The PINGs sent: nonce and the fake time each went out. */
  pings: { nonce: number; at: number }[];
  failures: TunnelError[];
  samples: number[];
}

/** `answerAfterMs`: the peer answers every PING that many ms after it went out (null: only when the test does). */
function harness(intervalMs: number, answerAfterMs: number | null = null): Harness {
  const pings: Harness['pings'] = [];
  const failures: TunnelError[] = [];
  const samples: number[] = [];
  const keepalive: Keepalive = new Keepalive(intervalMs, () => Date.now(), {
    sendControl(bytes) {
      const frame = decodeFrame(bytes);
      if (frame.kind !== FrameKind.PING) throw new Error(`unexpected frame kind ${frame.kind}`);
      pings.push({ nonce: frame.nonce, at: Date.now() });
      const nonce = frame.nonce;
      if (answerAfterMs !== null) setTimeout(() => keepalive.onPong(nonce), answerAfterMs);
    },
    fail(err) {
      failures.push(err);
    },
    rtt(sample) {
      samples.push(sample);
    },
  });
  return { keepalive, pings, failures, samples };
}

const T0 = 1_000_000;

beforeEach(() => {
  jest.useFakeTimers({ now: T0 });
});
afterEach(() => {
  jest.useRealTimers();
});

test('an idle session pings when it opens and then every interval, nothing more', () => {
  const h = harness(20_000, 1);
  h.keepalive.start();
  jest.advanceTimersByTime(45_000);
  expect(h.pings.map((p) => p.at - T0)).toEqual([0, 20_000, 40_000]);
  expect(h.samples).toEqual([1, 1, 1]);
  expect(h.failures).toEqual([]);
  h.keepalive.stop();
});

test('window growth gets no RTT from the first sample alone: its first ask sends one probe, and the answer is the least sample', () => {
  const h = harness(20_000);
  h.keepalive.start();
  // No sample yet (the first PING is in flight): no RTT, and no probe beside it.
  expect(h.keepalive.rttForGrowth()).toBeNull();
  expect(h.pings).toHaveLength(1);
  // The first sample, taken while the session was being set up, is slow.
  jest.advanceTimersByTime(12);
  h.keepalive.onPong(h.pings[0]!.nonce);
  expect(h.keepalive.baseRttMs).toBe(12);
  expect(h.keepalive.rttForGrowth()).toBeNull();
  expect(h.keepalive.rttForGrowth()).toBeNull();
  expect(h.pings).toHaveLength(2); // one probe, however often growth asks
  jest.advanceTimersByTime(1);
  h.keepalive.onPong(h.pings[1]!.nonce);
  expect(h.keepalive.rttForGrowth()).toBe(1);
  expect(h.samples).toEqual([12, 1]);
  // From now on growth asks without probing.
  expect(h.keepalive.rttForGrowth()).toBe(1);
  expect(h.pings).toHaveLength(2);
  h.keepalive.stop();
});

test('a stopped session sends no probe', () => {
  const h = harness(20_000);
  h.keepalive.start();
  h.keepalive.onPong(h.pings[0]!.nonce);
  h.keepalive.stop();
  expect(h.keepalive.rttForGrowth()).toBeNull();
  expect(h.pings).toHaveLength(1);
  expect(jest.getTimerCount()).toBe(0);
});

test('an unanswered PING fails at the next tick; an unanswered probe at the tick after, and a tick sends nothing while it is in flight', () => {
  const plain = harness(1000);
  plain.keepalive.start();
  jest.advanceTimersByTime(1000);
  expect(plain.failures.map((e) => e.code)).toEqual(['KEEPALIVE_TIMEOUT']);
  plain.keepalive.stop();

  const probed = harness(1000);
  const t1 = Date.now();
  probed.keepalive.start();
  jest.advanceTimersByTime(1);
  probed.keepalive.onPong(probed.pings[0]!.nonce);
  jest.advanceTimersByTime(899);
  probed.keepalive.rttForGrowth(); // the probe, at 900 ms, never answered
  expect(probed.pings.map((p) => p.at - t1)).toEqual([0, 900]);
  jest.advanceTimersByTime(100);
  // The first tick: the probe is in flight and not yet due; nothing is sent and nothing fails.
  expect(probed.failures).toEqual([]);
  expect(probed.pings).toHaveLength(2);
  jest.advanceTimersByTime(1000);
  expect(probed.failures.map((e) => e.code)).toEqual(['KEEPALIVE_TIMEOUT']);
  probed.keepalive.stop();
});
