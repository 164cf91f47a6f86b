/**
 * The latency one kas-to-kas hop adds: small GETs through the replica that holds the agent (local)
 * and through another replica (routed over the private API), interleaved in rounds, same run. A real
 * redis-server on loopback, two kas and one agentk in this process (a relative comparison).
 *
 *   npm run build && node dist/bench/hop-latency.js [--requests 1000] [--rounds 5]
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KasApp } from '../src/broker/app.js';
import { createLogger } from '../src/shared/logger.js';
import { startRedis } from '../test/support/redis.js';
import { startFakeKubeApi } from '../test/support/fake-kube-api.js';
import { startStack } from '../test/support/stack.js';
import { median, numberFlag, sequentialGets } from './lib/sequential-gets.js';

const REQUESTS = numberFlag('requests', 1000);
const ROUNDS = numberFlag('rounds', 5);



async function main(): Promise<void> {
  const redis = await startRedis();
  const upstream = await startFakeKubeApi({ handler: (_req, res) => res.end('{"kind":"NamespaceList","items":[]}'), record: false });
  const secretFile = join(tmpdir(), `hop-bench-${process.pid}.secret`);
  writeFileSync(secretFile, `${randomBytes(32).toString('base64')}\n`);
  const stack = await startStack({
    upstream,
    kas: {
      observability: { logging: { level: 'warn' } },
      redis: { server: { address: redis.address }, key_prefix: `hop-${process.pid}` },
      private_api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
    },
  });
  const other = new KasApp({ config: stack.kas.config, logger: createLogger({ name: 'kas', level: 'warn' }) });
  await other.start();
  const local = stack.proxyUrl;
  const routed = `https://${other.addresses.kubernetes_api}`;
  const rows: Array<{ local: { p50: number; p99: number }; routed: { p50: number; p99: number } }> = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const l = await sequentialGets(local, '/api/v1/namespaces', stack.proxyCa, stack.bearer(), REQUESTS);
      const r = await sequentialGets(routed, '/api/v1/namespaces', stack.proxyCa, stack.bearer(), REQUESTS);
      rows.push({ local: l, routed: r });
      console.log(`round ${round}: local p50 ${l.p50.toFixed(3)} p99 ${l.p99.toFixed(3)} ms | one hop p50 ${r.p50.toFixed(3)} p99 ${r.p99.toFixed(3)} ms`);
    }
    const addedP50 = rows.map((x) => x.routed.p50 - x.local.p50);
    const addedP99 = rows.map((x) => x.routed.p99 - x.local.p99);
    console.log(
      `\nmedian over ${ROUNDS} rounds of ${REQUESTS} GETs: local p50 ${median(rows.map((x) => x.local.p50)).toFixed(3)} ms p99 ${median(rows.map((x) => x.local.p99)).toFixed(3)} ms; ` +
        `one kas-to-kas hop p50 ${median(rows.map((x) => x.routed.p50)).toFixed(3)} ms p99 ${median(rows.map((x) => x.routed.p99)).toFixed(3)} ms; ` +
        `added p50 ${median(addedP50).toFixed(3)} ms, p99 ${median(addedP99).toFixed(3)} ms`,
    );
  } finally {
    await other.stop();
    await stack.close();
    await upstream.close();
    await redis.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
