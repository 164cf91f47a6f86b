import { HealthStore } from './health-store.js';

const HOUR = 3_600_000;

function store(connected: Set<number>, over: Partial<ConstructorParameters<typeof HealthStore>[0]> = {}): HealthStore {
  return new HealthStore({ maxAgents: 3, maxBytes: 1000, retentionMs: 24 * HOUR, isConnected: (id) => connected.has(id), ...over });
}

describe('workload health store', () => {
  it('keeps the latest summary of an agent with when it arrived and when the agent was seen', () => {
    const s = store(new Set([1]));
    expect(s.get(1, 0)).toBeNull();
    s.seen(1, 10);
    expect(s.get(1, 11)).toEqual({ summary: null, updatedAt: null, lastSeen: 10, instance: null, seq: 0 });
    expect(s.put(1, { instance: 'a', seq: 1 }, '{"x":1}', 20)).toBe('stored');
    s.seen(1, 30);
    expect(s.get(1, 31)).toEqual({ summary: '{"x":1}', updatedAt: 20, lastSeen: 30, instance: 'a', seq: 1 });
    expect(s.totalBytes).toBe(7);
  });

  it('ignores an earlier summary of the same agentk that arrives late, but not one of a new agentk process', () => {
    const s = store(new Set());
    s.put(1, { instance: 'a', seq: 5 }, '"five"', 1);
    expect(s.put(1, { instance: 'a', seq: 4 }, '"four"', 2)).toBe('stale');
    expect(s.put(1, { instance: 'a', seq: 5 }, '"five again"', 3)).toBe('stored');
    expect(s.put(1, { instance: 'b', seq: 0 }, '"restarted"', 4)).toBe('stored');
    expect(s.get(1, 5)!.summary).toBe('"restarted"');
  });

  it('evicts the disconnected agents least recently heard of first, beyond max_agents', () => {
    const connected = new Set([1]);
    const s = store(connected);
    s.put(1, { instance: 'a', seq: 0 }, '1', 1);
    s.put(2, { instance: 'a', seq: 0 }, '2', 2);
    s.put(3, { instance: 'a', seq: 0 }, '3', 3);
    s.put(4, { instance: 'a', seq: 0 }, '4', 4);
    expect(s.agents).toBe(3);
    expect(s.get(1, 5)).not.toBeNull();
    expect(s.get(2, 5)).toBeNull();
    s.seen(3, 6);
    s.put(5, { instance: 'a', seq: 0 }, '5', 7);
    expect([1, 3, 4, 5].map((id) => s.get(id, 8) !== null)).toEqual([true, true, false, true]);
  });

  it('keeps within max_bytes, evicting connected agents only when no disconnected one is left', () => {
    const connected = new Set([1, 2]);
    const s = store(connected, { maxAgents: 100, maxBytes: 100 });
    s.put(1, { instance: 'a', seq: 0 }, 'x'.repeat(40), 1);
    s.put(2, { instance: 'a', seq: 0 }, 'x'.repeat(40), 2);
    s.put(3, { instance: 'a', seq: 0 }, 'x'.repeat(40), 3);
    expect(s.totalBytes).toBeLessThanOrEqual(100);
    expect(s.get(1, 4)).toBeNull();
    expect(s.get(3, 4)).not.toBeNull();
  });

  it('forgets a disconnected agent after retention, never a connected one', () => {
    const connected = new Set([1]);
    const s = store(connected, { retentionMs: HOUR });
    s.put(1, { instance: 'a', seq: 0 }, '1', 0);
    s.put(2, { instance: 'a', seq: 0 }, '2', 0);
    expect(s.get(2, HOUR)).not.toBeNull();
    s.sweep(HOUR + 1);
    expect(s.get(2, HOUR + 1)).toBeNull();
    expect(s.get(1, 10 * HOUR)).not.toBeNull();
    expect(s.totalBytes).toBe(1);
  });
});
