import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { StandaloneAuth } from './standalone-auth.js';
import type { ProxyRequestCredentials } from '../auth/types.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(os.tmpdir(), 'standalone-auth-'));
  writeFileSync(join(dir, 'agent'), 'agent-secret\n');
  writeFileSync(join(dir, 'proxy'), 'proxy-secret\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function auth(agentIds: number[]): StandaloneAuth {
  return new StandaloneAuth({
    agents: agentIds.map((id) => ({ id, name: `a${id}`, token_file: join(dir, 'agent') })),
    proxy_tokens: [{ token_file: join(dir, 'proxy'), agents: agentIds, access_as: { agent: {} } }],
  } as never);
}

const bearer = (value: string): ProxyRequestCredentials => ({ rawHeaders: ['Authorization', `Bearer ${value}`], queryParam: () => null });

test('a proxy token is accepted for its agents only, every time, and a wrong one is refused after a right one', async () => {
  const a = auth([1, 2]);
  for (let i = 0; i < 3; i++) expect(await a.authorize(bearer('pat:1:proxy-secret'))).toEqual({ ok: true, decision: { agentId: 1, impersonate: null, credential: 'pat' } });
  expect(await a.authorize(bearer('pat:2:proxy-secret'))).toMatchObject({ ok: true, decision: { agentId: 2 } });
  expect(await a.authorize(bearer('pat:1:proxy-secreT'))).toMatchObject({ ok: false, status: 401, reason: 'wrong_token' });
  expect(await a.authorize(bearer('pat:3:proxy-secret'))).toMatchObject({ ok: false, status: 401, reason: 'unknown_agent' });
  expect(await a.authorize(bearer('pat:1:proxy-secret'))).toMatchObject({ ok: true, decision: { agentId: 1 } });
  expect(await a.authorize({ rawHeaders: [], queryParam: () => null })).toMatchObject({ ok: false, status: 401, reason: 'missing' });
  expect(await a.authorize(bearer('glpat-x'))).toMatchObject({ ok: false, status: 401, reason: 'malformed' });
});

test('the accepted credentials it remembers are bounded', async () => {
  const ids = Array.from({ length: 1100 }, (_, i) => i + 1);
  const a = auth(ids);
  for (const id of ids) expect(await a.authorize(bearer(`pat:${id}:proxy-secret`))).toMatchObject({ ok: true, decision: { agentId: id } });
  expect((a as unknown as { accepted: Map<string, unknown> }).accepted.size).toBeLessThanOrEqual(1024);
  // Forgotten ones are still accepted (decided again).
  expect(await a.authorize(bearer('pat:1:proxy-secret'))).toMatchObject({ ok: true, decision: { agentId: 1 } });
});
