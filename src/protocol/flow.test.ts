/**
 * Flow-control bookkeeping with an injected clock: byte budgets and the receive window of one stream.
 */
import { BufferBudget, MIN_RTT_MS, ReceiveWindow } from './flow.js';

describe('BufferBudget', () => {
  test('reserves up to its limit and refuses the byte beyond it', () => {
    const b = new BufferBudget(100);
    expect(b.tryReserve(60)).toBe(true);
    expect(b.tryReserve(40)).toBe(true);
    expect(b.used).toBe(100);
    expect(b.tryReserve(1)).toBe(false);
    expect(b.used).toBe(100);
  });

  test('a refused reservation takes nothing, so a smaller one still fits', () => {
    const b = new BufferBudget(100);
    b.tryReserve(70);
    expect(b.tryReserve(31)).toBe(false);
    expect(b.used).toBe(70);
    expect(b.tryReserve(30)).toBe(true);
  });

  test('released bytes can be reserved again', () => {
    const b = new BufferBudget(100);
    b.tryReserve(100);
    b.release(25);
    expect(b.used).toBe(75);
    expect(b.tryReserve(25)).toBe(true);
    expect(b.tryReserve(1)).toBe(false);
  });

  test('a session budget reserves from the process budget too, and releases back to it', () => {
    const processBudget = new BufferBudget(1000);
    const a = new BufferBudget(600, processBudget);
    const b = new BufferBudget(600, processBudget);
    expect(a.tryReserve(500)).toBe(true);
    expect(processBudget.used).toBe(500);
    expect(b.tryReserve(500)).toBe(true);
    expect(processBudget.used).toBe(1000);
    a.release(200);
    expect(a.used).toBe(300);
    expect(processBudget.used).toBe(800);
  });

  test('when the process budget is full a session with room of its own is still refused, and keeps nothing', () => {
    const processBudget = new BufferBudget(100);
    const a = new BufferBudget(1000, processBudget);
    const b = new BufferBudget(1000, processBudget);
    expect(a.tryReserve(90)).toBe(true);
    expect(b.tryReserve(20)).toBe(false);
    expect(b.used).toBe(0);
    expect(processBudget.used).toBe(90);
    expect(b.tryReserve(10)).toBe(true);
  });

  test('a session over its own limit is refused even when the process budget has room', () => {
    const processBudget = new BufferBudget(10_000);
    const a = new BufferBudget(100, processBudget);
    expect(a.tryReserve(101)).toBe(false);
    expect(processBudget.used).toBe(0);
  });

  test('headroom is the free fraction of the tightest budget in the chain', () => {
    const processBudget = new BufferBudget(1000);
    const a = new BufferBudget(100, processBudget);
    const other = new BufferBudget(1000, processBudget);
    expect(a.headroom()).toBe(1);
    a.tryReserve(25);
    expect(a.headroom()).toBeCloseTo(0.75);
    other.tryReserve(875);
    // The process budget now has 100 of 1000 free: tighter than the session's 75 of 100.
    expect(a.headroom()).toBeCloseTo(0.1);
    other.release(875);
    expect(a.headroom()).toBeCloseTo(0.75);
    a.release(25);
    expect(a.headroom()).toBe(1);
  });
});

describe('ReceiveWindow', () => {
  const KiB = 1024;

  test('starts with the whole initial window as the peer\'s credit', () => {
    const w = new ReceiveWindow(64 * KiB, 1024 * KiB, 0);
    expect(w.size).toBe(64 * KiB);
    expect(w.outstanding).toBe(64 * KiB);
  });

  test('bytes that merely arrived return no credit: only consuming them does', () => {
    const w = new ReceiveWindow(64 * KiB, 64 * KiB, 0);
    expect(w.received(64 * KiB)).toBe(true);
    expect(w.outstanding).toBe(0);
    // Nothing consumed yet: the peer keeps waiting, however long it takes.
    expect(w.consumed(0, 10_000, 5, true)).toBe(0);
    expect(w.outstanding).toBe(0);
    expect(w.consumed(64 * KiB, 10_000, 5, true)).toBe(64 * KiB);
    expect(w.outstanding).toBe(64 * KiB);
  });

  test('credit is returned only once half a window has been consumed, then all of it at once', () => {
    const w = new ReceiveWindow(64 * KiB, 64 * KiB, 0);
    w.received(40 * KiB);
    expect(w.consumed(10 * KiB, 1, null, true)).toBe(0);
    expect(w.consumed(21 * KiB, 2, null, true)).toBe(0);
    expect(w.outstanding).toBe(24 * KiB);
    // 32 KiB consumed: exactly half the window, worth a WINDOW frame.
    expect(w.consumed(1 * KiB, 3, null, true)).toBe(32 * KiB);
    expect(w.outstanding).toBe(56 * KiB);
    // The counter starts again from zero.
    expect(w.consumed(8 * KiB, 4, null, true)).toBe(0);
  });

  test('the peer overrunning its credit is detected and the overrun is not counted', () => {
    const w = new ReceiveWindow(4 * KiB, 4 * KiB, 0);
    expect(w.received(3 * KiB)).toBe(true);
    expect(w.received(1 * KiB + 1)).toBe(false);
    expect(w.outstanding).toBe(1 * KiB);
    expect(w.received(1 * KiB)).toBe(true);
    expect(w.received(1)).toBe(false);
    expect(w.outstanding).toBe(0);
  });

  test('a single frame larger than the whole window is an overrun', () => {
    const w = new ReceiveWindow(4 * KiB, 4 * KiB, 0);
    expect(w.received(4 * KiB + 1)).toBe(false);
    expect(w.outstanding).toBe(4 * KiB);
  });

  test('the window doubles when half of it was consumed within two round trips', () => {
    const w = new ReceiveWindow(64 * KiB, 1024 * KiB, 1000);
    w.received(32 * KiB);
    // 32 KiB consumed 15 ms after the window opened, with a 10 ms round trip: the sender is starved.
    const increment = w.consumed(32 * KiB, 1015, 10, true);
    expect(w.size).toBe(128 * KiB);
    // The consumed bytes plus the growth.
    expect(increment).toBe(32 * KiB + 64 * KiB);
    expect(w.outstanding).toBe(128 * KiB);
  });

  test('the window does not grow when half of it took longer than two round trips to drain', () => {
    const w = new ReceiveWindow(64 * KiB, 1024 * KiB, 1000);
    w.received(32 * KiB);
    expect(w.consumed(32 * KiB, 1020, 10, true)).toBe(32 * KiB);
    expect(w.size).toBe(64 * KiB);
  });

  test('the growth clock restarts at every WINDOW sent, not at the stream\'s opening', () => {
    const w = new ReceiveWindow(64 * KiB, 1024 * KiB, 0);
    w.received(64 * KiB);
    // Slow first half: no growth, but the epoch moves to t=500.
    expect(w.consumed(32 * KiB, 500, 10, true)).toBe(32 * KiB);
    expect(w.size).toBe(64 * KiB);
    // Fast second half, measured from t=500: grows.
    w.consumed(32 * KiB, 505, 10, true);
    expect(w.size).toBe(128 * KiB);
  });

  test('the window never grows beyond maxWindow, however fast it drains', () => {
    const w = new ReceiveWindow(64 * KiB, 200 * KiB, 0);
    let now = 0;
    for (let i = 0; i < 10; i++) {
      const half = w.size / 2;
      expect(w.received(half)).toBe(true);
      now += 1;
      w.consumed(half, now, 10, true);
      expect(w.size).toBeLessThanOrEqual(200 * KiB);
    }
    expect(w.size).toBe(200 * KiB);
    // The credit the peer holds never exceeds the window either.
    expect(w.outstanding).toBeLessThanOrEqual(200 * KiB);
  });

  test('a maxWindow below the initial window leaves the window at its initial size', () => {
    const w = new ReceiveWindow(64 * KiB, 16 * KiB, 0);
    w.received(32 * KiB);
    w.consumed(32 * KiB, 1, 10, true);
    expect(w.size).toBe(64 * KiB);
  });

  test('no growth while the round-trip time is unknown', () => {
    const w = new ReceiveWindow(64 * KiB, 1024 * KiB, 0);
    w.received(32 * KiB);
    expect(w.consumed(32 * KiB, 0, null, true)).toBe(32 * KiB);
    expect(w.size).toBe(64 * KiB);
  });

  test('no growth when the caller says memory is tight (mayGrow false)', () => {
    const w = new ReceiveWindow(64 * KiB, 1024 * KiB, 0);
    w.received(32 * KiB);
    expect(w.consumed(32 * KiB, 1, 10, false)).toBe(32 * KiB);
    expect(w.size).toBe(64 * KiB);
  });

  test('a round-trip time of 0 counts as MIN_RTT_MS: growth within two of them, none after', () => {
    const fast = new ReceiveWindow(64 * KiB, 1024 * KiB, 0);
    fast.received(32 * KiB);
    fast.consumed(32 * KiB, MIN_RTT_MS, 0, true);
    expect(fast.size).toBe(128 * KiB);
    const slow = new ReceiveWindow(64 * KiB, 1024 * KiB, 0);
    slow.received(32 * KiB);
    slow.consumed(32 * KiB, 2 * MIN_RTT_MS, 0, true);
    expect(slow.size).toBe(64 * KiB);
  });

  test('credit held by the peer plus bytes buffered and not yet acknowledged always equals the window', () => {
    const w = new ReceiveWindow(16 * KiB, 256 * KiB, 0);
    let buffered = 0;
    let unacked = 0;
    let now = 0;
    // A deterministic mix of arrivals and reads of odd sizes.
    for (let i = 0; i < 500; i++) {
      now += i % 7;
      const arrive = Math.min(w.outstanding, (i * 7919) % 5000);
      expect(w.received(arrive)).toBe(true);
      buffered += arrive;
      const read = Math.min(buffered, (i * 104729) % 6000);
      buffered -= read;
      const increment = w.consumed(read, now, i % 3 === 0 ? null : 3, i % 5 !== 0);
      unacked = increment > 0 ? 0 : unacked + read;
      expect(w.outstanding).toBeGreaterThanOrEqual(0);
      expect(w.outstanding + buffered + unacked).toBe(w.size);
    }
  });
});
