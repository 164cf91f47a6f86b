/**
 * The latency one kas-to-kas hop adds: small GETs through the replica that holds the agent (local)
 * and through another replica (routed over the private API), interleaved in rounds, same run. A real
 * redis-server on loopback, two kas and one agentk in this process (a relative comparison).
 *
 *   npm run build && node dist/bench/hop-latency.js [--requests 1000] [--rounds 5]
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KasApp } from '../src/broker/app.js';
import { createLogger } from '../src/shared/logger.js';
import { startRedis } from '../test/support/redis.js';
import { startStack, startUpstream, type Stack } from '../test/support/stack.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const REQUESTS = arg('requests', 1000);
const ROUNDS = arg('rounds', 5);

function get(agent: https.Agent, url: string, stack: Stack): Promise<number> {
  const start = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = https.request(new URL('/api/v1/namespaces', url), { agent, ca: stack.proxyCa, headers: { authorization: stack.bearer() } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - start) / 1e6) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

async function series(url: string, stack: Stack): Promise<{ p50: number; p99: number }> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 50; i++) await get(agent, url, stack);
  const t: number[] = [];
  for (let i = 0; i < REQUESTS; i++) t.push(await get(agent, url, stack));
  agent.destroy();
  t.sort((a, b) => a - b);
  return { p50: t[Math.floor(t.length / 2)]!, p99: t[Math.min(t.length - 1, Math.floor(t.length * 0.99))]! };
}

async function main(): Promise<void> {
  const redis = await startRedis();
  const upstream = await startUpstream((_req, res) => res.end('{"kind":"NamespaceList","items":[]}'));
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
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rows: Array<{ local: { p50: number; p99: number }; routed: { p50: number; p99: number } }> = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const l = await series(local, stack);
      const r = await series(routed, stack);
      rows.push({ local: l, routed: r });
      console.log(`round ${round}: local p50 ${l.p50.toFixed(3)} p99 ${l.p99.toFixed(3)} ms | one hop p50 ${r.p50.toFixed(3)} p99 ${r.p99.toFixed(3)} ms`);
    }
    const addedP50 = rows.map((x) => x.routed.p50 - x.local.p50);
    const addedP99 = rows.map((x) => x.routed.p99 - x.local.p99);
    console.log(
      `\nmedian over ${ROUNDS} rounds of ${REQUESTS} GETs: local p50 ${med(rows.map((x) => x.local.p50)).toFixed(3)} ms p99 ${med(rows.map((x) => x.local.p99)).toFixed(3)} ms; ` +
        `one kas-to-kas hop p50 ${med(rows.map((x) => x.routed.p50)).toFixed(3)} ms p99 ${med(rows.map((x) => x.routed.p99)).toFixed(3)} ms; ` +
        `added p50 ${med(addedP50).toFixed(3)} ms, p99 ${med(addedP99).toFixed(3)} ms`,
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
