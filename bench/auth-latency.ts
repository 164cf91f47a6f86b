/**
 * The latency a cached GitLab-mode authorization adds to a proxy request, against standalone mode,
 * in the same run: two kas (one in GitLab mode against the fake GitLab, one standalone), each with
 * its agentk, the same upstream; small GETs over one keep-alive connection, interleaved in rounds.
 * Everything runs in this one process (a relative comparison: both paths pay the same for that).
 *
 *   npm run build && node dist/bench/auth-latency.js [--requests 1000] [--rounds 5]
 */
import https from 'node:https';
import { startFakeGitLab } from '../test/support/fake-gitlab.js';
import { startStack, startUpstream, type Stack } from '../test/support/stack.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const REQUESTS = arg('requests', 1000);
const ROUNDS = arg('rounds', 5);

function get(agent: https.Agent, stack: Stack, auth: string): Promise<number> {
  const start = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = https.request(new URL('/api/v1/namespaces', stack.proxyUrl), { agent, ca: stack.proxyCa, headers: { authorization: auth } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - start) / 1e6) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function series(stack: Stack, auth: string): Promise<{ p50: number; p99: number }> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 50; i++) await get(agent, stack, auth);
  const times: number[] = [];
  for (let i = 0; i < REQUESTS; i++) times.push(await get(agent, stack, auth));
  agent.destroy();
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

async function main(): Promise<void> {
  const gl = await startFakeGitLab();
  gl.addProject({ id: 42, fullPath: 'acme/clusters' });
  gl.addAgent({ id: 1, name: 'prod', projectId: 42, token: 'glagent-bench-0123456789abcdefghij' });
  gl.addUser({ id: 100, username: 'alice', pat: ['glpat-bench'] });
  gl.setUserAccess(1, 100, { access_as: { agent: {} }, configProjectId: 42 });
  const upstream = await startUpstream((_req, res) => res.end('{"kind":"NamespaceList","items":[]}'));
  const quiet = { observability: { logging: { level: 'warn' } } };
  const standalone = await startStack({ upstream, kas: quiet });
  const gitlab = await startStack({
    upstream,
    kas: quiet,
    gitlab: { url: gl.url, caPem: gl.caPem, secretFileContent: gl.secretFileContent, repositoryToken: gl.repositoryToken, agentToken: 'glagent-bench-0123456789abcdefghij' },
  });
  const rows: Array<{ round: number; standalone: { p50: number; p99: number }; gitlab: { p50: number; p99: number } }> = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const s = await series(standalone, standalone.bearer());
      const g = await series(gitlab, 'Bearer pat:1:glpat-bench');
      rows.push({ round, standalone: s, gitlab: g });
      console.log(`round ${round}: standalone p50 ${s.p50.toFixed(3)} ms p99 ${s.p99.toFixed(3)} ms | GitLab mode (cached) p50 ${g.p50.toFixed(3)} ms p99 ${g.p99.toFixed(3)} ms | added p50 ${(g.p50 - s.p50).toFixed(3)} ms`);
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const added = rows.map((r) => r.gitlab.p50 - r.standalone.p50);
    console.log(`\nmedian over ${ROUNDS} rounds of ${REQUESTS} GETs: standalone p50 ${med(rows.map((r) => r.standalone.p50)).toFixed(3)} ms, GitLab mode p50 ${med(rows.map((r) => r.gitlab.p50)).toFixed(3)} ms, added by the cached authorization ${med(added).toFixed(3)} ms (min ${Math.min(...added).toFixed(3)}, max ${Math.max(...added).toFixed(3)})`);
    console.log(`GitLab authorize_proxy_user calls during the run: ${gl.callsTo('/internal/kubernetes/authorize_proxy_user').length} (the rest were cache hits)`);
  } finally {
    await gitlab.close();
    await standalone.close();
    await upstream.close();
    await gl.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
