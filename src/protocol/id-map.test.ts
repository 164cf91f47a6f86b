import { HandleSet, IdMap } from './id-map.js';

/** A small deterministic PRNG (mulberry32), so a failure replays. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function sorted(values: number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

describe('IdMap', () => {
  test('sets, gets, replaces and deletes', () => {
    const m = new IdMap<string>();
    // A map that never held anything (it allocates its arrays on the first set).
    expect([m.size, m.get(1), m.has(1), m.delete(1), m.values()]).toEqual([0, undefined, false, false, []]);
    m.set(1, 'a').set(3, 'b');
    expect([m.get(1), m.get(3), m.size]).toEqual(['a', 'b', 2]);
    m.set(1, 'c');
    expect([m.get(1), m.size]).toEqual(['c', 2]);
    expect(m.delete(1)).toBe(true);
    expect(m.delete(1)).toBe(false);
    expect([m.get(1), m.has(1), m.has(3), m.size]).toEqual([undefined, false, true, 1]);
  });

  test('refuses keys outside 1..2^31-1, and never finds them', () => {
    const m = new IdMap<number>();
    for (const bad of [0, -1, 1.5, 2 ** 31, Number.NaN, Infinity]) {
      expect(() => m.set(bad, 1)).toThrow(RangeError);
      expect(m.get(bad)).toBeUndefined();
      expect(m.delete(bad)).toBe(false);
    }
    m.set(2 ** 31 - 1, 7);
    expect(m.get(2 ** 31 - 1)).toBe(7);
    // 0 marks free slots: asking for it must not find (or remove) one.
    expect(m.has(0)).toBe(false);
    expect(m.size).toBe(1);
  });

  test('shrinks after a burst drains, but keeps one size while the streams in flight swing between a few and a few dozen', () => {
    const m = new IdMap<number>();
    expect(m.slots).toBe(0);
    for (let k = 1; k <= 10_000; k++) m.set(k, k);
    expect(m.slots).toBeGreaterThanOrEqual(20_000);
    for (let k = 1; k < 10_000; k++) m.delete(k);
    expect(m.size).toBe(1);
    expect(m.slots).toBeLessThanOrEqual(64);
    expect(m.get(10_000)).toBe(10_000);
    // 32 connections: between 5 and 40 in flight, over and over. Every size seen after the first
    // swing is the same one (a shrink at 1/8 full to a half resized it twice per swing).
    const swing = new IdMap<number>();
    const sizes = new Set<number>();
    let next = 1;
    let oldest = 1;
    for (let round = 0; round < 50; round++) {
      while (swing.size < 40) swing.set(next, next++);
      if (round > 0) sizes.add(swing.slots);
      while (swing.size > 5) expect(swing.delete(oldest++)).toBe(true);
      if (round > 0) sizes.add(swing.slots);
    }
    expect([...sizes]).toEqual([128]);
  });

  test('agrees with a Map under random churn, growing and shrinking (ids that only grow, as a session hands them out, and random ones)', () => {
    for (const mode of ['rising', 'random'] as const) {
      const next = rng(mode === 'rising' ? 1 : 2);
      const m = new IdMap<number>();
      const model = new Map<number, number>();
      // The model's keys in an array too, so picking one to delete is cheap.
      const live: number[] = [];
      const wrongDeletes: number[] = [];
      let id = 1;
      for (let step = 0; step < 60_000; step++) {
        // Phases: fill to a few thousand, drain, fill again; keys close together and far apart.
        const fill = Math.floor(step / 15_000) % 2 === 0;
        if (next() < (fill ? 0.6 : 0.35)) {
          const key = mode === 'rising' ? (id += 2) : 1 + Math.floor(next() * 5000) * (next() < 0.5 ? 1 : 400_000);
          if (!model.has(key)) live.push(key);
          m.set(key, step);
          model.set(key, step);
        } else if (live.length > 0) {
          // Delete an existing key most of the time, a missing one sometimes.
          const at = Math.floor(next() * live.length);
          const key = next() < 0.9 ? live[at]! : 1 + Math.floor(next() * 1_000_000);
          if (model.has(key)) {
            const i = key === live[at] ? at : live.indexOf(key);
            live[i] = live[live.length - 1]!;
            live.pop();
          }
          if (m.delete(key) !== model.delete(key)) wrongDeletes.push(key);
        }
        if (step % 997 === 0) {
          expect(m.size).toBe(model.size);
          expect([...model].filter(([k, v]) => m.get(k) !== v)).toEqual([]);
          expect(sorted(m.values())).toEqual(sorted([...model.values()]));
        }
      }
      expect(wrongDeletes).toEqual([]);
      expect(live.filter((k) => !m.delete(k))).toEqual([]);
      expect([m.size, m.values()]).toEqual([0, []]);
    }
  });

  test('keys that share a home slot stay reachable after deletions in the middle of their run', () => {
    const m = new IdMap<number>();
    // Many keys in a small table collide; delete every other one and check the rest.
    const keys = Array.from({ length: 7 }, (_, i) => 1 + i * 16);
    for (const k of keys) m.set(k, k);
    for (const k of keys.filter((_, i) => i % 2 === 0)) m.delete(k);
    for (const k of keys.filter((_, i) => i % 2 === 1)) expect(m.get(k)).toBe(k);
    for (const k of keys.filter((_, i) => i % 2 === 0)) expect(m.get(k)).toBeUndefined();
  });

  test('clear empties it, and it is usable afterwards', () => {
    const m = new IdMap<string>();
    for (let i = 1; i <= 1000; i++) m.set(i, String(i));
    m.clear();
    expect([m.size, m.get(5), m.values()]).toEqual([0, undefined, []]);
    m.set(5, 'five');
    expect(m.get(5)).toBe('five');
  });
});

describe('HandleSet', () => {
  test('add returns distinct handles; delete takes them back once', () => {
    const s = new HandleSet<string>();
    const a = s.add('a');
    const b = s.add('b');
    expect(a).not.toBe(b);
    expect(sorted([a, b]).length).toBe(2);
    expect(s.values().sort()).toEqual(['a', 'b']);
    expect(s.delete(a)).toBe(true);
    expect(s.delete(a)).toBe(false);
    expect([s.size, s.values()]).toEqual([1, ['b']]);
  });

  test('the same value may be added twice and is then held twice', () => {
    const s = new HandleSet<string>();
    const h1 = s.add('x');
    const h2 = s.add('x');
    expect(s.size).toBe(2);
    s.delete(h1);
    expect(s.values()).toEqual(['x']);
    s.delete(h2);
    expect(s.size).toBe(0);
  });

  test('handles wrap after 2^31 - 1 additions and skip one still in use', () => {
    const s = new HandleSet<string>();
    const first = s.add('long-lived');
    expect(first).toBe(1);
    // Jump to the end of the range (what 2^31 - 2 more additions would do).
    (s as unknown as { last: number }).last = 2 ** 31 - 2;
    expect(s.add('b')).toBe(2 ** 31 - 1);
    // Wraps: 1 is still in use, so the next handle is 2.
    expect(s.add('c')).toBe(2);
    expect(s.values().sort()).toEqual(['b', 'c', 'long-lived']);
  });
});
