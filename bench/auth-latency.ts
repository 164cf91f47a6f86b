/**
 * The latency a cached GitLab-mode authorization adds to a proxy request, against standalone mode,
 * in the same run: two kas (one in GitLab mode against the fake GitLab, one standalone), each with
 * its agentk, the same upstream; small GETs over one keep-alive connection, interleaved in rounds.
 * Everything runs in this one process (a relative comparison: both paths pay the same for that).
 *
 *   npm run build && node dist/bench/auth-latency.js [--requests 1000] [--rounds 5]
 */
import { startFakeGitLab } from '../test/support/fake-gitlab.js';
import { startFakeKubeApi } from '../test/support/fake-kube-api.js';
import { startStack } from '../test/support/stack.js';
import { median, numberFlag, sequentialGets } from './lib/sequential-gets.js';

const REQUESTS = numberFlag('requests', 1000);
const ROUNDS = numberFlag('rounds', 5);




async function main(): Promise<void> {
  const gl = await startFakeGitLab();
  gl.addProject({ id: 42, fullPath: 'acme/clusters' });
  gl.addAgent({ id: 1, name: 'prod', projectId: 42, token: 'glagent-bench-0123456789abcdefghij' });
  gl.addUser({ id: 100, username: 'alice', pat: ['glpat-bench'] });
  gl.setUserAccess(1, 100, { access_as: { agent: {} }, configProjectId: 42 });
  const upstream = await startFakeKubeApi({ handler: (_req, res) => res.end('{"kind":"NamespaceList","items":[]}'), record: false });
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
      const s = await sequentialGets(standalone.proxyUrl, '/api/v1/namespaces', standalone.proxyCa, standalone.bearer(), REQUESTS);
      const g = await sequentialGets(gitlab.proxyUrl, '/api/v1/namespaces', gitlab.proxyCa, 'Bearer pat:1:glpat-bench', REQUESTS);
      rows.push({ round, standalone: s, gitlab: g });
      console.log(`round ${round}: standalone p50 ${s.p50.toFixed(3)} ms p99 ${s.p99.toFixed(3)} ms | GitLab mode (cached) p50 ${g.p50.toFixed(3)} ms p99 ${g.p99.toFixed(3)} ms | added p50 ${(g.p50 - s.p50).toFixed(3)} ms`);
    }
    const added = rows.map((r) => r.gitlab.p50 - r.standalone.p50);
    console.log(`\nmedian over ${ROUNDS} rounds of ${REQUESTS} GETs: standalone p50 ${median(rows.map((r) => r.standalone.p50)).toFixed(3)} ms, GitLab mode p50 ${median(rows.map((r) => r.gitlab.p50)).toFixed(3)} ms, added by the cached authorization ${median(added).toFixed(3)} ms (min ${Math.min(...added).toFixed(3)}, max ${Math.max(...added).toFixed(3)})`);
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
