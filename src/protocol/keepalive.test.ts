/**
 * Keepalive on its own, with a fake clock: when PINGs go out (the first, the RTT probes, the
 * interval), what the base RTT is made of, and when an unanswered PING closes the session.
 */
import { jest } from '@jest/globals';
import type { TunnelError } from './errors.js';
import { decodeFrame, FrameKind } from './frames.js';
import { Keepalive, RTT_PROBE_DELAYS_MS } from './keepalive.js';

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

test('after the first PING, RTT probes go out at the probe delays, then PINGs every interval', () => {
  const h = harness(20_000, 1);
  h.keepalive.start();
  jest.advanceTimersByTime(45_000);
  expect(h.pings.map((p) => p.at - T0)).toEqual([0, ...RTT_PROBE_DELAYS_MS, 20_000, 40_000]);
  expect(h.samples).toEqual(Array.from({ length: 7 }, () => 1));
  expect(h.failures).toEqual([]);
  h.keepalive.stop();
});

test('the base RTT is the least of the recent samples: a slow first sample (a busy start) gives way to a probe', () => {
  const h = harness(20_000);
  h.keepalive.start();
  jest.advanceTimersByTime(12);
  h.keepalive.onPong(h.pings[0]!.nonce);
  expect(h.keepalive.baseRttMs).toBe(12);
  jest.advanceTimersByTime(250 - 12);
  expect(h.pings).toHaveLength(2);
  h.keepalive.onPong(h.pings[1]!.nonce);
  expect(h.keepalive.baseRttMs).toBe(0);
  expect(h.samples).toEqual([12, 0]);
  h.keepalive.stop();
});

test('a probe is skipped while a PING is in flight, and none is sent at or after the first tick', () => {
  const h = harness(1000);
  h.keepalive.start();
  // The first PING is still unanswered at 250 ms: no probe then.
  jest.advanceTimersByTime(300);
  expect(h.pings).toHaveLength(1);
  h.keepalive.onPong(h.pings[0]!.nonce);
  // The next probe would be at 1000 ms, the first tick: only the tick's PING goes out.
  jest.advanceTimersByTime(700);
  expect(h.pings.map((p) => p.at - T0)).toEqual([0, 1000]);
  h.keepalive.onPong(h.pings[1]!.nonce);
  jest.advanceTimersByTime(1000);
  expect(h.pings.map((p) => p.at - T0)).toEqual([0, 1000, 2000]);
  expect(h.failures).toEqual([]);
  h.keepalive.stop();
});

test('an unanswered PING fails at the next tick; an unanswered probe at the tick after', () => {
  const plain = harness(1000);
  plain.keepalive.start();
  jest.advanceTimersByTime(1000);
  expect(plain.failures.map((e) => e.code)).toEqual(['KEEPALIVE_TIMEOUT']);
  plain.keepalive.stop();

  const probed = harness(1000);
  probed.keepalive.start();
  jest.advanceTimersByTime(1);
  probed.keepalive.onPong(probed.pings[0]!.nonce);
  jest.advanceTimersByTime(249);
  expect(probed.pings).toHaveLength(2); // the 250 ms probe, never answered
  jest.advanceTimersByTime(750);
  // The first tick: the probe is in flight and not yet due; nothing is sent and nothing fails.
  expect(probed.failures).toEqual([]);
  expect(probed.pings).toHaveLength(2);
  jest.advanceTimersByTime(1000);
  expect(probed.failures.map((e) => e.code)).toEqual(['KEEPALIVE_TIMEOUT']);
  probed.keepalive.stop();
});

test('stop() ends the probes too: no timer is left', () => {
  const h = harness(20_000);
  h.keepalive.start();
  h.keepalive.onPong(h.pings[0]!.nonce);
  h.keepalive.stop();
  jest.advanceTimersByTime(60_000);
  expect(h.pings).toHaveLength(1);
  expect(jest.getTimerCount()).toBe(0);
});
