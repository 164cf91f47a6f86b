import { Registry } from 'prom-client';
import { createLogger } from '../../shared/logger.js';
import { LogCapture } from '../../../test/support/logs.js';
import { AgentEvents, type AgentEventsBody } from './agent-events.js';

const registration = { project_id: 42, agent_id: 1, agent_version: '1.0.0', architecture: 'amd64', kubernetes_version: 'v1.20.2', extra_telemetry: { b: '2', a: '1' } };

function setup(maxPending = 100) {
  const posted: AgentEventsBody[] = [];
  let answer: () => Promise<void> = () => Promise.resolve();
  const registry = new Registry();
  const logs = new LogCapture();
  const events = new AgentEvents(
    {
      postAgentEvents: (body) => {
        posted.push(JSON.parse(JSON.stringify(body)) as AgentEventsBody);
        return answer();
      },
    },
    createLogger({ name: 'kas', level: 'debug', destination: logs }),
    maxPending,
    registry,
  );
  return { events, posted, registry, logs, fail: (next: () => Promise<void>) => (answer = next) };
}

describe('AgentEvents', () => {
  test('identical entries of a period are one; telemetry key order does not matter', async () => {
    const { events, posted } = setup();
    events.registerAgent(registration);
    events.registerAgent({ ...registration, extra_telemetry: { a: '1', b: '2' } });
    events.registerAgent({ ...registration, kubernetes_version: 'v1.21.0' });
    events.proxyUser({ agentId: 1, impersonate: null, credential: 'pat' }, 7, 42);
    events.proxyUser({ agentId: 1, impersonate: null, credential: 'pat' }, 7, 42);
    events.proxyUser({ agentId: 1, impersonate: null, credential: 'session_cookie' }, 7, 42);
    events.proxyUser({ agentId: 1, impersonate: null, credential: 'gitlab_jwt' }, null, null);
    expect(events.pendingCount).toBe(4);
    await events.flush();
    expect(posted).toEqual([
      {
        events: {
          register_agent_at_kas: [{ ...registration, extra_telemetry: { a: '1', b: '2' } }, { ...registration, kubernetes_version: 'v1.21.0', extra_telemetry: { a: '1', b: '2' } }],
          k8s_api_proxy_requests_unique_users_via_pat_access: [{ user_id: 7, project_id: 42 }],
          k8s_api_proxy_requests_unique_users_via_user_access: [{ user_id: 7, project_id: 42 }],
        },
      },
    ]);
    expect(events.pendingCount).toBe(0);
    await events.flush();
    expect(posted).toHaveLength(1);
  });

  test('a failed post keeps everything for the next one; what arrived meanwhile goes too, once', async () => {
    const { events, posted, fail } = setup();
    events.proxyUser({ agentId: 1, impersonate: null, credential: 'ci' }, 1, 43);
    fail(() => Promise.reject(new Error('503 Service Unavailable')));
    await events.flush();
    events.proxyUser({ agentId: 1, impersonate: null, credential: 'ci' }, 2, 43);
    fail(() => Promise.resolve());
    await events.flush();
    await events.flush();
    expect(posted.map((p) => p.events.k8s_api_proxy_requests_unique_users_via_ci_access)).toEqual([[{ user_id: 1, project_id: 43 }], [{ user_id: 1, project_id: 43 }, { user_id: 2, project_id: 43 }]]);
    expect(events.pendingCount).toBe(0);
  });

  test('an entry added while a post is under way is not forgotten when that post is accepted', async () => {
    const { events, posted, fail } = setup();
    let accept!: () => void;
    fail(() => new Promise<void>((resolve) => (accept = resolve)));
    events.proxyUser({ agentId: 1, impersonate: null, credential: 'pat' }, 1, 42);
    const sending = events.flush();
    events.proxyUser({ agentId: 1, impersonate: null, credential: 'pat' }, 2, 42);
    accept();
    await sending;
    expect(events.pendingCount).toBe(1);
    fail(() => Promise.resolve());
    await events.flush();
    expect(posted[1]!.events.k8s_api_proxy_requests_unique_users_via_pat_access).toEqual([{ user_id: 2, project_id: 42 }]);
  });

  test('bounded: past maxPending newer entries are dropped, counted and logged once, until GitLab accepts', async () => {
    const { events, registry, logs, fail } = setup(3);
    fail(() => Promise.reject(new Error('GitLab is down')));
    for (let user = 1; user <= 10; user++) events.proxyUser({ agentId: 1, impersonate: null, credential: 'pat' }, user, 42);
    expect(events.pendingCount).toBe(3);
    await events.flush();
    expect(events.pendingCount).toBe(3);
    expect(await registry.getSingleMetricAsString('kas_gitlab_agent_events_dropped_total')).toContain('kas_gitlab_agent_events_dropped_total{event="k8s_api_proxy_requests_unique_users_via_pat_access"} 7');
    expect(logs.entries.filter((e) => String(e.msg).includes('too many agent events'))).toHaveLength(1);
    fail(() => Promise.resolve());
    await events.flush();
    events.proxyUser({ agentId: 1, impersonate: null, credential: 'pat' }, 11, 42);
    expect(events.pendingCount).toBe(1);
  });
});
