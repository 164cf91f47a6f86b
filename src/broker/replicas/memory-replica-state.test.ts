import { AgentRegistry } from '../tunnel/agent-registry.js';
import { MemoryReplicaState } from './memory-replica-state.js';

describe('MemoryReplicaState: one replica, no Redis', () => {
  test('no other holders; git pushes reach this replica\'s subscribers; refusals are not shared', async () => {
    const state = new MemoryReplicaState(new AgentRegistry(), 'kas-0');
    expect(await state.presence.holders(1)).toEqual([]);
    const pushes: number[] = [];
    state.gitPush.subscribe((p) => pushes.push(p));
    await state.gitPush.publish(42);
    expect(pushes).toEqual([42]);
    await state.refusals.recordRefusal('agent', 'digest', 1000);
    expect(await state.refusals.refusedRecently('agent', 'digest')).toBe(false);
    expect(await state.records.connections([1], [42])).toEqual([]);
    expect(state.healthy).toBe(true);
  });

  test('the connection rate limit counts per token in a fixed window of one minute', async () => {
    const state = new MemoryReplicaState(new AgentRegistry(), 'kas-0');
    expect(await state.rateLimit.allow('t1', 2)).toBe(true);
    expect(await state.rateLimit.allow('t1', 2)).toBe(true);
    expect(await state.rateLimit.allow('t1', 2)).toBe(false);
    expect(await state.rateLimit.allow('t2', 2)).toBe(true);
  });
});
