/**
 * The embedded default: a standalone development setup made on first start in a local folder
 * (git-ignored `.dev/` by default): an agent token, a proxy token, a self-signed certificate for
 * the proxy listener and the configuration that uses them. Later starts reuse the same files.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { generateSelfSignedCertificate } from '../../shared/tls-cert.js';
import { NODE_FLAGS } from '../../shared/node-flags.js';

export interface DevSetup {
  dir: string;
  configFile: string;
  agentTokenFile: string;
  proxyTokenFile: string;
  caFile: string;
  agentId: number;
}

function token(prefix: string): string {
  return prefix + randomBytes(38).toString('base64url').slice(0, 50);
}

function writeSecret(path: string, content: string): void {
  writeFileSync(path, content, { mode: 0o600 });
}

export async function ensureDevSetup(dirArg: string): Promise<DevSetup> {
  const dir = resolve(dirArg);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const setup: DevSetup = {
    dir,
    configFile: join(dir, 'kas.yaml'),
    agentTokenFile: join(dir, 'agent.token'),
    proxyTokenFile: join(dir, 'proxy.token'),
    caFile: join(dir, 'proxy-cert.pem'),
    agentId: 1,
  };
  const keyFile = join(dir, 'proxy-key.pem');
  if (!existsSync(setup.agentTokenFile)) writeSecret(setup.agentTokenFile, `${token('glagent-')}\n`);
  if (!existsSync(setup.proxyTokenFile)) writeSecret(setup.proxyTokenFile, `${token('dev-')}\n`);
  if (!existsSync(setup.caFile) || !existsSync(keyFile)) {
    const pair = await generateSelfSignedCertificate();
    writeFileSync(setup.caFile, pair.cert);
    writeSecret(keyFile, pair.key);
  }
  if (!existsSync(setup.configFile)) {
    const config = {
      agent: {
        listen: { address: '127.0.0.1:8150' },
        kubernetes_api: { listen: { address: '127.0.0.1:8154', certificate_file: setup.caFile, key_file: keyFile } },
      },
      observability: { listen: { address: '127.0.0.1:8151' } },
      standalone: {
        agents: [{ id: setup.agentId, name: 'dev-cluster', token_file: setup.agentTokenFile }],
        proxy_tokens: [{ token_file: setup.proxyTokenFile, agents: [setup.agentId], access_as: { agent: {} } }],
      },
    };
    writeFileSync(setup.configFile, `# Development setup made by kas on first start; edit freely.\n${stringify(config)}`);
  }
  return setup;
}

/** What a newcomer runs next: an agentk against their kubeconfig, and kubectl through kas. */
export function devInstructions(setup: DevSetup, agentAddress: string, proxyAddress: string): string {
  return [
    '',
    `kas is running in standalone development mode (configuration and secrets in ${setup.dir}).`,
    '',
    'Connect an agent to the cluster of your current kubeconfig (KUBECONFIG or ~/.kube/config, as for kubectl;',
    'add --kubeconfig FILE and --context NAME for another one), in another terminal:',
    `  node ${NODE_FLAGS.join(' ')} dist/src/agent/main.js --kas-address ws://${agentAddress}/ --token-file ${setup.agentTokenFile} --observability-listen-address 127.0.0.1:0`,
    '',
    'Then talk to that cluster through kas and the agent:',
    `  kubectl --server https://${proxyAddress} --certificate-authority ${setup.caFile} --token "pat:${setup.agentId}:$(cat ${setup.proxyTokenFile})" get ns`,
    '',
  ].join('\n');
}
