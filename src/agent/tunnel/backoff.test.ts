import { Backoff, DEFAULT_BACKOFF, fullJitterDelay } from './backoff.js';

describe('fullJitterDelay', () => {
  test('the ceiling doubles with each attempt from the base and stops at the cap', () => {
    const top = () => 0.999999;
    const ceilings = [0, 1, 2, 3, 4, 5, 6, 7, 20, 5000].map((a) => fullJitterDelay(a, DEFAULT_BACKOFF, top));
    expect(ceilings).toEqual([999, 1999, 3999, 7999, 15999, 31999, 59999, 59999, 59999, 59999]);
  });

  test('the smallest delay is 0 at every attempt (full jitter, not equal jitter)', () => {
    for (const attempt of [0, 1, 5, 10]) expect(fullJitterDelay(attempt, DEFAULT_BACKOFF, () => 0)).toBe(0);
  });

  test('delays are spread over the whole range [0, ceiling)', () => {
    const samples = Array.from({ length: 2000 }, () => fullJitterDelay(3, { baseMs: 1000, capMs: 60_000 }));
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...samples)).toBeLessThan(8000);
    // With 2000 uniform samples, each quarter of the range is hit (the chance of a miss is about 1e-250).
    const quarters = new Set(samples.map((s) => Math.floor(s / 2000)));
    expect([...quarters].sort()).toEqual([0, 1, 2, 3]);
  });

  test('a negative attempt is treated as the first', () => {
    expect(fullJitterDelay(-3, DEFAULT_BACKOFF, () => 0.5)).toBe(500);
  });
});

describe('Backoff', () => {
  test('each next() counts one attempt and grows the ceiling', () => {
    const b = new Backoff({ baseMs: 100, capMs: 1000 }, () => 0.5);
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([50, 100, 200, 400, 500]);
    expect(b.attempt).toBe(5);
  });

  test('a connection that stayed up for resetAfterMs resets the counter; a shorter one does not', () => {
    const b = new Backoff({ baseMs: 100, capMs: 10_000, resetAfterMs: 60_000 }, () => 0.5);
    b.next();
    b.next();
    b.next();
    expect(b.connectionEnded(59_999)).toBe(false);
    expect(b.next()).toBe(400);
    expect(b.connectionEnded(60_000)).toBe(true);
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(50);
  });
});
