/**
 * The soak's system, in this process, on loopback:
 *
 * - plain: one kas, agentk dialling its agent listener directly, clients on its proxy listener;
 * - with faults: `replicas` kas sharing a real redis-server (started here on a free port, stopped by
 *   pid), a round-robin TCP balancer in front of their agent listeners and another in front of their
 *   proxy listeners (the ingress), and every agentk dialling the agent balancer through its own
 *   fault proxy (its network link), so that one agent's link can be cut.
 *
 * The fault operations return once the system is whole again (or a time limit passed) and never
 * throw; `close()` stops everything that was started, also after a failure.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAgentk, type Agentk } from '../../src/agent/app.js';
import { loadApiServerConfig } from '../../src/agent/kubernetes-api/api-server.js';
import { KasApp } from '../../src/broker/app.js';
import { validateConfig, type KasConfig } from '../../src/broker/configuration/schema.js';
import { createLogger } from '../../src/shared/logger.js';
import { testCertificate } from '../../test/support/certificate.js';
import type { FakeKubeApi } from '../../test/support/fake-kube-api.js';
import { FaultProxy } from '../../test/support/fault-proxy.js';
import { LogCapture } from '../../test/support/logs.js';
import { startRedis, type TestRedis } from '../../test/support/redis.js';
import { startBalancer } from '../../test/support/balancer.js';

export interface TopologyOptions {
  upstream: FakeKubeApi;
  agents: number;
  /** 1 without faults; 2 or more with Redis, balancers and fault proxies. */
  replicas: number;
  faults: boolean;
}

export interface SoakTopology {
  /** Where clients send Kubernetes API requests (kas itself or the balancer in front of the replicas). */
  proxyUrl: string;
  proxyCa: string;
  agentIds: number[];
  bearer(agentId: number): string;
  /** Agent sessions held by all replicas. */
  sessions(): number;
  /** kas's warnings and errors, counted by message. */
  logSummary(): Array<{ level: string; msg: string; count: number }>;
  /** agentk is killed (its connections reset, no GOAWAY), stays away `downMs`, starts again. */
  killAgent(index: number, downMs: number): Promise<string | null>;
  /** The agent's link resets and stays dead (new connections stall) for `downMs`. */
  cutLink(index: number, downMs: number): Promise<string | null>;
  /** A replica leaves the balancers, shuts down gracefully (SIGTERM), and a new one starts with its configuration. */
  restartReplica(index: number, graceMs: number): Promise<string | null>;
  /** redis-server is killed and started again on its port after `downMs`. */
  restartRedis(downMs: number): Promise<string | null>;
  close(): Promise<void>;
}

const RECOVER_MS = 30_000;
const PROXY_TOKEN = 'soak-proxy-token';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

export async function startTopology(options: TopologyOptions): Promise<SoakTopology> {
  const dir = mkdtempSync(join(tmpdir(), 'soak-'));
  const cleanups: Array<() => Promise<unknown>> = [async () => rmSync(dir, { recursive: true, force: true })];
  const closeAll = async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  };
  try {
    return await build(options, dir, cleanups, closeAll);
  } catch (err) {
    await closeAll();
    throw err;
  }
}

async function build(options: TopologyOptions, dir: string, cleanups: Array<() => Promise<unknown>>, closeAll: () => Promise<void>): Promise<SoakTopology> {
  const { upstream, faults } = options;
  const file = (name: string, content: string) => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  const cert = await testCertificate();
  const certFile = file('cert.pem', cert.cert);
  const keyFile = file('key.pem', cert.key);
  const tokens = Array.from({ length: options.agents }, (_, i) => `glagent-soak-${i}-${randomBytes(8).toString('hex')}`);
  const agentIds = tokens.map((_, i) => i + 1);
  const agentEntries = tokens.map((t, i) => ({ id: i + 1, name: `soak-${i + 1}`, token_file: file(`agent${i + 1}.token`, `${t}\n`) }));
  const tls = { certificate_file: certFile, key_file: keyFile };

  let redis: TestRedis | null = null;
  if (faults) {
    redis = await startRedis();
    const r = redis;
    cleanups.push(() => r.close());
  }
  const secretFile = file('private.secret', `${randomBytes(32).toString('base64')}\n`);
  const config: KasConfig = validateConfig({
    agent: {
      listen: { address: '127.0.0.1:0', ...tls },
      kubernetes_api: { listen: { address: '127.0.0.1:0', ...tls } },
    },
    observability: { listen: { address: '127.0.0.1:0' }, logging: { level: 'warn' } },
    standalone: { agents: agentEntries, proxy_tokens: [{ token_file: file('proxy.token', `${PROXY_TOKEN}\n`), agents: agentIds }] },
    ...(redis && {
      redis: { server: { address: redis.address }, key_prefix: `soak-${process.pid}` },
      private_api: { listen: { address: '127.0.0.1:0', authentication_secret_file: secretFile } },
    }),
  });

  const kasLogs = new LogCapture();
  const replicas: Array<KasApp | null> = [];
  const startReplica = async (index: number) => {
    const app = new KasApp({ config, logger: createLogger({ name: 'kas', level: 'warn', destination: kasLogs }) });
    await app.start();
    replicas[index] = app;
    return app;
  };
  cleanups.push(async () => {
    for (const r of replicas) await r?.stop().catch(() => undefined);
  });
  for (let i = 0; i < options.replicas; i++) await startReplica(i);
  const live = (name: 'agent' | 'kubernetes_api') => replicas.flatMap((r) => (r?.addresses[name] ? [r.addresses[name]] : []));

  let agentTarget = live('agent')[0]!;
  let proxyAddress = live('kubernetes_api')[0]!;
  if (faults) {
    const agentLb = await startBalancer(() => live('agent'));
    cleanups.push(() => agentLb.close());
    const proxyLb = await startBalancer(() => live('kubernetes_api'));
    cleanups.push(() => proxyLb.close());
    agentTarget = agentLb.address;
    proxyAddress = proxyLb.address;
  }
  const links: Array<FaultProxy | null> = [];
  for (let i = 0; i < options.agents; i++) {
    if (!faults) {
      links.push(null);
      continue;
    }
    const link = await FaultProxy.start(agentTarget);
    links.push(link);
    cleanups.push(() => link.close());
  }

  const kubeconfig = upstream.writeKubeconfig(dir);
  const agents: Array<Agentk | null> = [];
  const startAgent = async (index: number) => {
    const agent = createAgentk({
      kasAddress: `wss://${links[index]?.address ?? agentTarget}/`,
      token: tokens[index]!,
      kasCaCert: cert.cert,
      apiServer: loadApiServerConfig({ kubeconfig, context: 'fake' }),
      observabilityListenAddress: '127.0.0.1:0',
      logger: createLogger({ name: 'agentk', level: 'warn', destination: new LogCapture() }),
      defaultMetrics: false,
      drainGraceMs: 2000,
      // Faster than the default (base 1 s, cap 60 s) so that a fault's outage, not the backoff after
      // it, decides how long the agent is away.
      backoff: { baseMs: 100, capMs: 2000 },
    });
    await agent.start();
    agents[index] = agent;
  };
  cleanups.push(async () => {
    for (const a of agents) await a?.stop().catch(() => undefined);
  });
  for (let i = 0; i < options.agents; i++) await startAgent(i);

  const connections = (agentId: number) => replicas.reduce((n, r) => n + (r ? r.registry.connections(agentId).length : 0), 0);
  const sessions = () => replicas.reduce((n, r) => n + (r?.registry.connectionCount ?? 0), 0);
  // Every agent with both of its connections (agentk's default) before the load starts.
  if (!(await until(() => agentIds.every((id) => connections(id) >= 2), RECOVER_MS))) throw new Error('the agents did not connect');

  const agentBack = async (index: number) => ((await until(() => connections(index + 1) > 0, RECOVER_MS)) ? null : `agent ${index + 1} not connected again within ${RECOVER_MS} ms`);

  return {
    proxyUrl: `https://${proxyAddress}`,
    proxyCa: cert.cert,
    agentIds,
    bearer: (agentId) => `Bearer pat:${agentId}:${PROXY_TOKEN}`,
    sessions,
    logSummary() {
      const counts = new Map<string, { level: string; msg: string; count: number }>();
      for (const e of kasLogs.entries as Array<{ level?: number | string; msg?: string }>) {
        const level = String(e.level);
        const key = `${level} ${e.msg}`;
        const c = counts.get(key) ?? { level, msg: String(e.msg), count: 0 };
        c.count++;
        counts.set(key, c);
      }
      return [...counts.values()].sort((a, b) => b.count - a.count);
    },
    async killAgent(index, downMs) {
      const link = links[index];
      const agent = agents[index];
      if (!link || !agent) return 'no link to fault';
      // A killed process says nothing: its connections reset. Then the in-process agent is stopped
      // (with nothing left to drain) and, later, a new one starts, as a restarted pod would.
      link.newConnectionMode = { mode: 'stall' };
      link.cut();
      agents[index] = null;
      await agent.stop();
      link.cut();
      link.newConnectionMode = { mode: 'pass' };
      await sleep(downMs);
      try {
        await startAgent(index);
      } catch (err) {
        return `agent ${index + 1} did not start again: ${String(err)}`;
      }
      return agentBack(index);
    },
    async cutLink(index, downMs) {
      const link = links[index];
      if (!link) return 'no link to fault';
      // The network goes away: live connections reset, new ones hang (no answer) until it is back;
      // the attempts made meanwhile are reset then, and the agent dials again.
      link.newConnectionMode = { mode: 'stall' };
      link.cut();
      await sleep(downMs);
      link.cut();
      link.newConnectionMode = { mode: 'pass' };
      return agentBack(index);
    },
    async restartReplica(index, graceMs) {
      const old = replicas[index];
      if (!old) return `replica ${index} is not running`;
      // The ingress stops sending new connections to the replica (it turned not ready), then SIGTERM.
      replicas[index] = null;
      await old.shutdown(graceMs);
      try {
        await startReplica(index);
      } catch (err) {
        return `replica ${index} did not start again: ${String(err)}`;
      }
      return (await until(() => agentIds.every((id) => connections(id) > 0), RECOVER_MS)) ? null : `not every agent connected within ${RECOVER_MS} ms of the replica's restart`;
    },
    async restartRedis(downMs) {
      if (!redis) return 'no Redis';
      await redis.kill();
      await sleep(downMs);
      try {
        await redis.restart();
      } catch (err) {
        return `Redis did not start again: ${String(err)}`;
      }
      return null;
    },
    close: closeAll,
  };
}
