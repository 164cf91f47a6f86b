/**
 * Soak: a real kas with several agentk for a bounded time, under a mix of short requests, uploads,
 * watches and cancellations. Reports requests served, errors (only provoked cancellations are
 * expected, and they are counted apart), and memory and handle counts at start, middle and end.
 * Everything runs in this process, on loopback.
 *
 *   npm run soak -- [--duration 120] [--agents 4] [--concurrency 16]
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdtempSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAgentk, type Agentk } from '../src/agent/app.js';
import { loadApiServerConfig } from '../src/agent/kubernetes-api/api-server.js';
import { createLogger } from '../src/shared/logger.js';
import { startFakeKubeApi } from '../test/support/fake-kube-api.js';
import { startStack } from '../test/support/stack.js';
import { numberFlag } from './lib/sequential-gets.js';

const DURATION_S = numberFlag('duration', 120);
const AGENTS = numberFlag('agents', 4);
const CONCURRENCY = numberFlag('concurrency', 16);

interface Sample {
  at: string;
  rssMb: number;
  heapMb: number;
  handles: number;
  sessions: number;
}

function sample(label: string, sessions: number): Sample {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { at: label, rssMb: m.rss / 2 ** 20, heapMb: m.heapUsed / 2 ** 20, handles: process.getActiveResourcesInfo().length, sessions };
}

async function main(): Promise<void> {
  const upstream = await startFakeKubeApi({
    handler: (req, res) => {
      const url = new URL(req.url!, 'https://x');
      if (url.pathname === '/watch') {
        res.writeHead(200);
        const t = setInterval(() => res.write('{"type":"MODIFIED"}\n'), 50);
        res.on('close', () => clearInterval(t));
        return;
      }
      if (url.pathname === '/big') {
        res.writeHead(200);
        const block = Buffer.alloc(64 * 1024, 1);
        const pump = () => {
          while (!res.destroyed && res.write(block));
        };
        res.on('drain', pump);
        pump();
        return;
      }
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(`got ${n}`));
    },
    record: false,
  });
  const dir = mkdtempSync(join(tmpdir(), 'soak-'));
  const tokens = Array.from({ length: AGENTS }, (_, i) => `glagent-soak-${i}-${randomBytes(8).toString('hex')}`);
  const agents = tokens.map((t, i) => {
    const f = join(dir, `agent${i + 1}.token`);
    writeFileSync(f, `${t}\n`);
    return { id: i + 1, name: `soak-${i + 1}`, token_file: f };
  });
  const proxyTokenFile = join(dir, 'proxy.token');
  writeFileSync(proxyTokenFile, 'soak-proxy-token\n');
  const stack = await startStack({
    upstream,
    startAgent: false,
    kas: { observability: { logging: { level: 'warn' } }, standalone: { agents, proxy_tokens: [{ token_file: proxyTokenFile, agents: agents.map((a) => a.id) }] } },
  });
  const kubeconfig = join(stack.dir, 'kubeconfig.yaml');
  const running: Agentk[] = [];
  for (const token of tokens) {
    const a = createAgentk({
      kasAddress: `wss://${stack.kas.addresses.agent}/`,
      token,
      kasCaCert: stack.proxyCa,
      apiServer: loadApiServerConfig({ kubeconfig }),
      observabilityListenAddress: '127.0.0.1:0',
      logger: createLogger({ name: 'agentk', level: 'warn' }),
      defaultMetrics: false,
    });
    await a.start();
    running.push(a);
  }
  while (stack.kas.registry.agentCount < AGENTS) await new Promise((r) => setTimeout(r, 20));

  const httpAgent = new https.Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });
  const counts = { served: 0, uploads: 0, watches: 0, cancelled: 0, errors: 0 };
  const errorKinds: Record<string, number> = {};
  const fail = (kind: string) => {
    counts.errors++;
    errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
  };
  const request = (agentId: number, method: string, path: string, body: Buffer | null, onResponse: (res: import('node:http').IncomingMessage, req: import('node:http').ClientRequest) => void) =>
    new Promise<void>((resolve) => {
      const req = https.request(new URL(path, stack.proxyUrl), { method, agent: httpAgent, ca: stack.proxyCa, headers: { authorization: `Bearer pat:${agentId}:soak-proxy-token`, ...(body && { 'content-length': body.length }) } }, (res) => {
        onResponse(res, req);
        res.on('close', () => resolve());
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (!req.destroyed || err.code !== 'ECONNRESET') fail(`request ${err.code ?? err.message}`);
        resolve();
      });
      req.end(body ?? undefined);
    });

  const upload = randomBytes(256 * 1024);
  const deadline = Date.now() + DURATION_S * 1000;
  const samples: Sample[] = [sample('start', stack.kas.registry.connectionCount)];
  const middle = setTimeout(() => samples.push(sample('middle', stack.kas.registry.connectionCount)), (DURATION_S * 1000) / 2);
  const worker = async () => {
    while (Date.now() < deadline) {
      const agentId = 1 + Math.floor(Math.random() * AGENTS);
      const r = Math.random();
      if (r < 0.6) {
        await request(agentId, 'GET', '/api/v1/pods', null, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => (res.statusCode === 200 && body === 'got 0' ? counts.served++ : fail(`get ${res.statusCode}`)));
        });
      } else if (r < 0.75) {
        await request(agentId, 'POST', '/api/v1/configmaps', upload, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => (res.statusCode === 200 && body === `got ${upload.length}` ? (counts.served++, counts.uploads++) : fail(`upload ${res.statusCode}`)));
        });
      } else if (r < 0.85) {
        await request(agentId, 'GET', '/watch?watch=1', null, (res, req) => {
          let events = 0;
          res.on('data', () => events++);
          setTimeout(() => {
            if (events > 0) {
              counts.watches++;
              counts.served++;
            } else fail('watch saw no event');
            req.destroy();
          }, 200 + Math.random() * 1500);
        });
      } else {
        await request(agentId, 'GET', '/big', null, (res, req) => {
          res.once('data', () => {
            counts.cancelled++;
            req.destroy();
          });
        });
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  clearTimeout(middle);
  httpAgent.destroy();
  await new Promise((r) => setTimeout(r, 1000));
  samples.push(sample('end', stack.kas.registry.connectionCount));
  for (const a of running) await a.stop();
  await stack.close();
  await upstream.close();

  console.log(`soak: ${DURATION_S} s, ${AGENTS} agents, ${CONCURRENCY} concurrent clients`);
  console.log(`requests served ${counts.served} (uploads ${counts.uploads}, watches ${counts.watches}), provoked cancellations ${counts.cancelled}, errors ${counts.errors}${counts.errors ? ` ${JSON.stringify(errorKinds)}` : ''}`);
  for (const s of samples) console.log(`${s.at.padEnd(6)} rss ${s.rssMb.toFixed(1)} MB, heap ${s.heapMb.toFixed(1)} MB, active handles ${s.handles}, agent sessions ${s.sessions}`);
  process.exit(counts.errors === 0 ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
