import { AbsentAgents } from './absent-agents.js';
import { readsErrorsRaw, statusReply } from './status-reply.js';

describe('AbsentAgents', () => {
  test('an agent is absent for the given time after a wait for it timed out, then waited for again', () => {
    let now = 1000;
    const absent = new AbsentAgents(500, 10, () => now);
    expect(absent.recentlyAbsent(1)).toBe(false);
    absent.record(1);
    expect(absent.recentlyAbsent(1)).toBe(true);
    expect(absent.recentlyAbsent(2)).toBe(false);
    now += 500;
    expect(absent.recentlyAbsent(1)).toBe(false);
  });

  test('it remembers at most max agents', () => {
    let now = 0;
    const absent = new AbsentAgents(100, 3, () => now);
    for (const id of [1, 2, 3]) absent.record(id);
    now = 50;
    absent.record(4);
    expect([1, 2, 3, 4].filter((id) => absent.recentlyAbsent(id))).toEqual([4]);
  });
});

describe('statusReply', () => {
  test('JSON Status for clients that decode it; text for client-go aggregated discovery, which reads error bodies raw', () => {
    const json = statusReply('application/json', 502, 'agent 1 is not connected');
    expect(json.contentType).toBe('application/json');
    expect(JSON.parse(json.body.toString())).toMatchObject({ kind: 'Status', code: 502, message: 'agent 1 is not connected' });
    const discovery = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json';
    expect(readsErrorsRaw(discovery)).toBe(true);
    const text = statusReply(discovery, 502, 'agent 1 is not connected');
    expect(text.contentType).toBe('text/plain; charset=utf-8');
    expect(text.body.toString()).toBe('agent 1 is not connected\n');
  });
});
