/**
 * A whole path on loopback for integration tests: the fake Kubernetes API server (fake-kube-api.ts)
 * as the upstream, a real kas (in-process KasApp, TLS on both listeners, port 0) and a real agentk
 * (in-process) connected to it over wss. Everything binds 127.0.0.1 port 0 and is stopped by
 * `close()`, also when a test fails.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAgentk, type AgentOptions, type Agentk } from '../../src/agent/app.js';
import { loadApiServerConfig } from '../../src/agent/kubernetes-api/api-server.js';
import { KasApp } from '../../src/broker/app.js';
import { validateConfig } from '../../src/broker/configuration/schema.js';
import { createLogger } from '../../src/shared/logger.js';
import { testCertificate } from './certificate.js';
import type { FakeKubeApi } from './fake-kube-api.js';
import { LogCapture } from './logs.js';
import { waitFor } from './wait.js';

export interface StackOptions {
  /** The API server agentk serves: where it is, the CA to trust ('' for none) and agentk's token there. */
  upstream: Pick<FakeKubeApi, 'url' | 'caPem' | 'token'>;
  /** Extra kas configuration merged over the stack's own (standalone section is the stack's). */
  kas?: Record<string, unknown>;
  /** access_as of the proxy token for agent 1. */
  accessAs?: Record<string, unknown>;
  agent?: Partial<AgentOptions>;
  /** Start the agent (default true). */
  startAgent?: boolean;
  /** GitLab mode against this (fake) GitLab, the agent using `agentToken`; also serves the API for GitLab. */
  gitlab?: { url: string; caPem: string | null; secretFileContent: string; repositoryToken: string; agentToken: string };
}

export interface Stack {
  kas: KasApp;
  agent: Agentk | null;
  kasLogs: LogCapture;
  agentLogs: LogCapture;
  /** https://127.0.0.1:<port> of the Kubernetes API proxy. */
  proxyUrl: string;
  proxyCa: string;
  proxyToken: string;
  agentToken: string;
  dir: string;
  /** `Authorization` header value for agent `id` (1 is connected; 2 is configured but never connects). */
  bearer(id?: number): string;
  startAgent(extra?: Partial<AgentOptions>): Promise<Agentk>;
  waitForAgent(sessions?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'kas-stack-'));
  const cert = await testCertificate();
  const file = (name: string, content: string) => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };
  const agentToken = options.gitlab?.agentToken ?? 'glagent-test-agent-token-0123456789';
  const proxyToken = 'proxy-test-token-9876543210';
  const certFile = file('cert.pem', cert.cert);
  const keyFile = file('key.pem', cert.key);
  const base = {
    agent: {
      listen: { address: '127.0.0.1:0', certificate_file: certFile, key_file: keyFile },
      kubernetes_api: { listen: { address: '127.0.0.1:0', certificate_file: certFile, key_file: keyFile } },
    },
    observability: { listen: { address: '127.0.0.1:0' } },
    standalone: {
      agents: [
        { id: 1, name: 'agent-one', token_file: file('agent1.token', `${agentToken}\n`) },
        { id: 2, name: 'agent-two', token_file: file('agent2.token', 'glagent-never-connects\n') },
      ],
      proxy_tokens: [{ token_file: file('proxy.token', `${proxyToken}\n`), agents: [1, 2], access_as: options.accessAs ?? { agent: {} } }],
    },
  };
  const gl = options.gitlab;
  const modeConfig = gl
    ? {
        ...base,
        standalone: undefined,
        gitlab: {
          address: gl.url,
          authentication_secret_file: file('gitlab.secret', gl.secretFileContent),
          repository_token_file: file('repository.token', `${gl.repositoryToken}\n`),
          ...(gl.caPem && { ca_certificate_file: file('gitlab-ca.pem', gl.caPem) }),
        },
        api: { listen: { address: '127.0.0.1:0', authentication_secret_file: join(dir, 'gitlab.secret') } },
      }
    : base;
  const config = validateConfig(JSON.parse(JSON.stringify(deepMerge(modeConfig, options.kas ?? {}))));
  const kasLogs = new LogCapture();
  const kas = new KasApp({ config, logger: createLogger({ name: 'kas', level: 'debug', destination: kasLogs }) });
  await kas.start();
  const kubeconfig = file(
    'kubeconfig.yaml',
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: options.upstream.url, ...(options.upstream.caPem ? { 'certificate-authority-data': Buffer.from(options.upstream.caPem).toString('base64') } : {}) } }],
      users: [{ name: 'u', user: { token: options.upstream.token } }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'ctx',
    }),
  );
  const agentLogs = new LogCapture();
  const stack: Stack = {
    kas,
    agent: null,
    kasLogs,
    agentLogs,
    proxyUrl: `https://${kas.addresses.kubernetes_api}`,
    proxyCa: cert.cert,
    proxyToken,
    agentToken,
    dir,
    bearer: (id = 1) => `Bearer pat:${id}:${proxyToken}`,
    async startAgent(extra = {}) {
      const agent = createAgentk({
        kasAddress: `wss://${kas.addresses.agent}/`,
        token: agentToken,
        kasCaCert: cert.cert,
        apiServer: loadApiServerConfig({ kubeconfig }),
        observabilityListenAddress: '127.0.0.1:0',
        logger: createLogger({ name: 'agentk', level: 'debug', destination: agentLogs }),
        defaultMetrics: false,
        drainGraceMs: 2000,
        backoff: { baseMs: 50, capMs: 500 },
        // Off unless a test asks: it would list and watch workloads, requests the proxy tests do not expect upstream.
        workloadHealth: false,
        ...options.agent,
        ...extra,
      });
      await agent.start();
      stack.agent = agent;
      return agent;
    },
    async waitForAgent(sessions = 1) {
      await waitFor(() => kas.registry.connections(1).length >= sessions, `agentk to connect ${sessions} session(s) to kas`);
    },
    async close() {
      await stack.agent?.stop().catch(() => undefined);
      await kas.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  if (options.startAgent !== false) {
    await stack.startAgent();
    await stack.waitForAgent();
  }
  return stack;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && prev && typeof prev === 'object' && !Array.isArray(prev) ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/** A request to the proxy over TLS, trusting the test certificate. Resolves once the head arrives. */
export function proxyRequest(stack: Stack, method: string, path: string, init: { headers?: http.OutgoingHttpHeaders; body?: Buffer | null; agentId?: number; auth?: string | null } = {}): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, stack.proxyUrl);
    const headers: http.OutgoingHttpHeaders = { ...init.headers };
    if (init.auth !== null) headers.authorization = init.auth ?? stack.bearer(init.agentId ?? 1);
    // Node's client sends no Content-Length for a GET or DELETE body unless told to.
    if (init.body && headers['content-length'] === undefined) headers['content-length'] = init.body.length;
    const req = https.request(url, { method, headers, ca: stack.proxyCa, agent: false }, resolve);
    req.on('error', reject);
    req.end(init.body ?? undefined);
  });
}
