import { Registry } from 'prom-client';
import { pino } from 'pino';
import { createMemoryTransportPair } from '../../protocol/memory-transport.js';
import { Session } from '../../protocol/session.js';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import { encodeGitopsStatus, encodeGitopsStatusHead, type GitopsStatusWire } from '../../protocol/gitops-status.js';
import type { AgentConnection } from '../tunnel/agent-registry.js';
import { GitopsStatusStore } from './status.js';
import { GitopsStatusMetrics } from './status-metrics.js';
import { errorOf } from '../../../test/support/streams.js';

const logger = pino({ level: 'silent' });

function status(projectId: string, over: Partial<GitopsStatusWire> = {}): GitopsStatusWire {
  return {
    project_id: projectId,
    commit: 'c'.repeat(40),
    trigger: 'snapshot',
    dry_run: 'none',
    started_at: new Date().toISOString(),
    duration_ms: 10,
    applied: 1,
    unchanged: 0,
    pruned: 0,
    failed: 0,
    objects: [{ group: '', kind: 'ConfigMap', namespace: 'default', name: 'a', action: 'created' }],
    objects_omitted: 0,
    errors: [],
    errors_omitted: 0,
    ...over,
  };
}

function store(limits = { maxResults: 100, maxBytes: 1024 * 1024 }) {
  const registry = new Registry();
  return { store: new GitopsStatusStore(limits, new GitopsStatusMetrics(registry)), registry };
}

describe('GitopsStatusStore', () => {
  test('keeps the latest result per agent and project, oldest dropped first beyond the bounds', () => {
    const { store: s } = store({ maxResults: 3, maxBytes: 1000 });
    s.put(1, status('a'), 100);
    s.put(1, status('b'), 100);
    s.put(2, status('a'), 100);
    s.put(1, status('a', { commit: 'new' }), 100); // replaces, becomes the newest
    expect(s.forAgent(1).map((e) => [e.status.project_id, e.status.commit])).toEqual([
      ['a', 'new'],
      ['b', 'c'.repeat(40)],
    ]);
    s.put(3, status('x'), 100); // 4 results: the oldest (1/b) goes
    expect(s.forAgent(1).map((e) => e.status.project_id)).toEqual(['a']);
    s.put(4, status('y'), 900); // bytes: 1/a, 2/a... go until under 1000
    expect(s.forAgent(4)).toHaveLength(1);
    expect(s.forAgent(1)).toHaveLength(0);
    expect(s.forAgent(2)).toHaveLength(0);
  });

  describe('serving gitops_status streams', () => {
    let agent: Session;
    let kas: Session;
    beforeEach(() => {
      const [a, b] = createMemoryTransportPair();
      kas = new Session(b, { role: 'server' });
      agent = new Session(a, { role: 'client' });
    });
    afterEach(() => {
      agent.close();
      kas.close();
    });

    function serveWith(s: GitopsStatusStore) {
      const connection = { identity: { agentId: 7 } } as unknown as AgentConnection;
      kas.on('stream', (stream: TunnelStream) => s.serve(stream, connection, logger));
    }

    test('a valid report is kept, counted and accepted', async () => {
      const { store: s, registry } = store();
      const seen: string[] = [];
      s.onStatus((agentId, st) => seen.push(`${agentId}:${st.project_id}`));
      serveWith(s);
      const stream = agent.openStream(encodeGitopsStatusHead({ projectId: 'p' }), { data: encodeGitopsStatus(status('p', { failed: 1, errors: [{ code: 'GITOPS_APPLY_FAILED', message: 'no' }] })), end: true });
      expect(await replyOf(stream)).toEqual({ accepted: true });
      expect(s.forAgent(7)[0]!.status.project_id).toBe('p');
      expect(seen).toEqual(['7:p']);
      const text = await registry.metrics();
      expect(text).toContain('kas_gitops_status_reports_total{result="failed"} 1');
      expect(text).toContain('kas_gitops_apply_errors_total{code="GITOPS_APPLY_FAILED"} 1');
    });

    test('a malformed report is reset with PROTOCOL_ERROR and nothing is kept', async () => {
      const { store: s } = store();
      serveWith(s);
      const bad = agent.openStream(encodeGitopsStatusHead({ projectId: 'p' }), { data: Buffer.from('{"project_id":"p","applied":-1}'), end: true });
      expect((await errorOf(bad)).code).toBe('PROTOCOL_ERROR');
      const noHead = agent.openStream({ t: 'gitops_status' }, { end: true });
      expect((await errorOf(noHead)).code).toBe('PROTOCOL_ERROR');
      expect(s.forAgent(7)).toEqual([]);
      // The session goes on.
      const good = agent.openStream(encodeGitopsStatusHead({ projectId: 'q' }), { data: encodeGitopsStatus(status('q')), end: true });
      expect(await replyOf(good)).toEqual({ accepted: true });
    });
  });
});
