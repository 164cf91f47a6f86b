/**
 * agentk's command line: the flags of the real agentk (docs/agentk.md), parsed and validated into
 * one typed value. Every mistake is an AgentConfigError naming the flag and what was expected; main
 * turns it into exit code 2.
 */
import { readFileSync } from 'node:fs';
import { delimiter } from 'node:path';
import { parseArgs } from 'node:util';
import { LOG_LEVELS } from '../shared/logger.js';
import type { LevelWithSilent } from 'pino';
import type { HeaderPair } from '../protocol/http.js';
import { AgentConfigError } from './config-error.js';
import { parseListenAddress, type ListenAddress } from '../shared/address.js';
import { formatDuration, parseDuration } from '../shared/duration.js';
import { validateElectionTimings } from './leader-election/leader-elector.js';
import { DEFAULT_NOTIFICATION_CONTROLLER_URL } from './flux/flux-module.js';
import { parseGitLabUrls } from './flux/git-url.js';

export interface AgentFlags {
  /** ws:// or wss:// URL of kas's agent endpoint. */
  kasAddress: URL;
  /** File holding the agent token; absent: the token comes from AGENTK_TOKEN. */
  tokenFile: string | undefined;
  kasCaCertFile: string | undefined;
  /** Extra headers for the WebSocket upgrade request, in order. */
  kasHeaders: HeaderPair[];
  kasConnections: number;
  observabilityListenAddress: ListenAddress;
  kubeconfig: string | undefined;
  context: string | undefined;
  logLevel: LevelWithSilent;
  /** Quiet time after a cluster change before the workload health summary is recomputed, ms. */
  workloadHealthDebounceMs: number;
  /** The leader election Lease's name (default agentk-<agent id>) and timings, ms. */
  leaderElectionLeaseName: string | undefined;
  leaderElectionLeaseDurationMs: number;
  leaderElectionRenewDeadlineMs: number;
  leaderElectionRetryPeriodMs: number;
  /** How often the last applied GitOps manifests are applied again, ms. */
  gitopsReconcilePeriodMs: number;
  /** Where GitLab (or, standalone, the Git server) serves repositories: Flux GitRepositories with these URLs are followed. */
  gitlabExternalUrls: URL[];
  /** Base URL of Flux's webhook receiver (the notification-controller's `webhook-receiver` Service). */
  fluxNotificationControllerUrl: URL;
}

export type Command = { command: 'help' } | { command: 'run'; flags: AgentFlags };

export const DEFAULT_KAS_CONNECTIONS = 2;
export const MAX_KAS_CONNECTIONS = 64;
export const DEFAULT_OBSERVABILITY_LISTEN_ADDRESS = ':8080';
export const DEFAULT_WORKLOAD_HEALTH_DEBOUNCE_MS = 2000;
const WORKLOAD_HEALTH_DEBOUNCE_RANGE_MS = [100, 300_000] as const;
export const DEFAULT_GITOPS_RECONCILE_PERIOD = '5m';

interface FlagSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  value?: string;
  help: string;
}

const FLAGS: Record<string, FlagSpec> = {
  'kas-address': { type: 'string', value: 'URL', help: 'kas agent endpoint, ws://host:port/path or wss://host:port/path (required)' },
  'token-file': { type: 'string', value: 'FILE', help: 'file holding the agent token (default: the AGENTK_TOKEN environment variable)' },
  'kas-ca-cert-file': { type: 'string', value: 'FILE', help: 'PEM CA certificates to trust for wss:// (default: the system roots)' },
  'kas-header': { type: 'string', multiple: true, value: '"Name: value"', help: 'extra header for the connection to kas; repeatable' },
  'kas-connections': { type: 'string', value: 'N', help: `connections to keep open to kas (default ${DEFAULT_KAS_CONNECTIONS})` },
  'observability-listen-address': { type: 'string', value: 'HOST:PORT', help: `listener of /metrics, /liveness, /readiness (default ${DEFAULT_OBSERVABILITY_LISTEN_ADDRESS}; port 0 picks a free port)` },
  kubeconfig: { type: 'string', value: 'FILE', help: 'kubeconfig to reach the API server (default: KUBECONFIG, else in a cluster its service account, else ~/.kube/config)' },
  context: { type: 'string', value: 'NAME', help: 'kubeconfig context to use (default: the kubeconfig\'s current context)' },
  'log-level': { type: 'string', value: 'LEVEL', help: `one of ${LOG_LEVELS.join(', ')} (default info)` },
  'workload-health-debounce': { type: 'string', value: 'DURATION', help: `quiet time after a cluster change before workload health is reported again (default ${formatDuration(DEFAULT_WORKLOAD_HEALTH_DEBOUNCE_MS)}; at most 5 times that under continuous change)` },
  'leader-election-lease-name': { type: 'string', value: 'NAME', help: 'Lease that elects the one pod applying GitOps and following Flux (default agentk-<agent id>)' },
  'leader-election-lease-duration': { type: 'string', value: 'DURATION', help: 'how long a lease holds without renewal; a successor takes over after it (default 15s)' },
  'leader-election-renew-deadline': { type: 'string', value: 'DURATION', help: 'a leader that could not renew for this long stops leading (default 10s)' },
  'leader-election-retry-period': { type: 'string', value: 'DURATION', help: 'how often candidates try and the leader renews (default 2s)' },
  'gitops-reconcile-period': { type: 'string', value: 'DURATION', help: `how often the last applied GitOps manifests are applied again, undoing drift (default ${DEFAULT_GITOPS_RECONCILE_PERIOD})` },
  'gitlab-external-url': { type: 'string', multiple: true, value: 'URL', help: 'where GitLab (standalone: the Git server) serves repositories, e.g. https://gitlab.example.com; Flux GitRepositories under it are reconciled on push; repeatable (default: none, Flux reconcile-on-push off)' },
  'flux-notification-controller-url': { type: 'string', value: 'URL', help: `base URL of Flux's webhook receiver (default ${DEFAULT_NOTIFICATION_CONTROLLER_URL})` },
  help: { type: 'boolean', help: 'print this help and exit' },
};

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** The text --help prints. */
export function helpText(): string {
  const lines = Object.entries(FLAGS).map(([name, spec]) => {
    const left = `  --${name}${spec.value ? ` ${spec.value}` : ''}`;
    return `${left.padEnd(46)}${spec.help}`;
  });
  return [
    'agentk: the GitLab agent for Kubernetes, in-cluster side. It dials out to kas over a WebSocket',
    'and serves the requests kas sends down it against this cluster\'s Kubernetes API server.',
    '',
    'Usage: agentk --kas-address wss://kas.example.com/ [--token-file FILE] [flags]',
    '',
    'Flags:',
    ...lines,
    '',
    'Environment:',
    '  AGENTK_TOKEN      the agent token, when --token-file is absent',
    `  KUBECONFIG        kubeconfig files separated by "${delimiter}" (merged), when --kubeconfig is absent`,
    '  KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT',
    '                    set in every pod: without --kubeconfig or KUBECONFIG, agentk uses the pod\'s service account',
    '  HOME              outside a cluster, without --kubeconfig or KUBECONFIG: $HOME/.kube/config',
    '  POD_NAME          this pod\'s name, reported to kas',
    '  POD_NAMESPACE     this pod\'s namespace, reported to kas',
    '  POD_UID           this pod\'s UID, reported to kas when agentk registers',
    '  GITLAB_AGENT_TELEMETRY_<NAME>',
    '                    extra telemetry reported to kas as <name> (lowercased; at most 20, values up to 256 characters)',
    '',
    'Exit codes: 0 clean shutdown (SIGTERM, SIGINT), 1 runtime failure, 2 bad flags or configuration.',
    '',
  ].join('\n');
}

/** Parses agentk's arguments (without the node and script paths). Throws AgentConfigError. */
export function parseFlags(argv: readonly string[]): Command {
  const options = Object.fromEntries(Object.entries(FLAGS).map(([name, spec]) => [name, { type: spec.type, multiple: spec.multiple ?? false }]));
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const values = new Map<string, string[]>();
  for (const token of tokens) {
    if (token.kind === 'positional') throw new AgentConfigError(token.value, 'unexpected argument: agentk takes only flags (see --help)');
    if (token.kind === 'option-terminator') throw new AgentConfigError('--', 'unexpected argument: agentk takes only flags (see --help)');
    const spec = FLAGS[token.name];
    if (!spec || !token.rawName.startsWith('--')) throw new AgentConfigError(token.rawName, 'unknown flag (see --help)');
    const flag = `--${token.name}`;
    if (spec.type === 'boolean') {
      if (token.value !== undefined) throw new AgentConfigError(flag, 'takes no value');
      values.set(token.name, ['true']);
      continue;
    }
    if (token.value === undefined) throw new AgentConfigError(flag, `expected a value (${spec.value})`);
    if (!token.inlineValue && token.value.startsWith('--')) throw new AgentConfigError(flag, `expected a value (${spec.value}), got the flag ${token.value}`);
    if (!spec.multiple && values.has(token.name)) throw new AgentConfigError(flag, 'given more than once');
    values.set(token.name, [...(values.get(token.name) ?? []), token.value]);
  }
  if (values.has('help')) return { command: 'help' };
  const one = (name: string): string | undefined => values.get(name)?.[0];

  const address = one('kas-address');
  if (address === undefined) throw new AgentConfigError('--kas-address', 'is required (the ws:// or wss:// URL of kas)');
  let kasAddress: URL;
  try {
    kasAddress = new URL(address);
  } catch {
    throw new AgentConfigError('--kas-address', `expected a ws:// or wss:// URL, got ${JSON.stringify(address)}`);
  }
  if (kasAddress.protocol !== 'ws:' && kasAddress.protocol !== 'wss:') {
    throw new AgentConfigError('--kas-address', `expected a ws:// or wss:// URL, got the scheme ${kasAddress.protocol.replace(/:$/, '')}`);
  }
  if (kasAddress.username || kasAddress.password) throw new AgentConfigError('--kas-address', 'must not carry credentials; use --token-file');

  const kasHeaders = (values.get('kas-header') ?? []).map((text) => parseHeader(text));

  const connectionsText = one('kas-connections');
  let kasConnections = DEFAULT_KAS_CONNECTIONS;
  if (connectionsText !== undefined) {
    kasConnections = /^\d+$/.test(connectionsText) ? Number(connectionsText) : NaN;
    if (!Number.isInteger(kasConnections) || kasConnections < 1 || kasConnections > MAX_KAS_CONNECTIONS) {
      throw new AgentConfigError('--kas-connections', `expected a whole number from 1 to ${MAX_KAS_CONNECTIONS}, got ${JSON.stringify(connectionsText)}`);
    }
  }

  const listenText = one('observability-listen-address') ?? DEFAULT_OBSERVABILITY_LISTEN_ADDRESS;
  const observabilityListenAddress = parseListenAddress(listenText);
  if (!observabilityListenAddress) {
    throw new AgentConfigError('--observability-listen-address', `expected host:port (for example :8080 or 127.0.0.1:0), got ${JSON.stringify(listenText)}`);
  }

  const logLevel = one('log-level') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new AgentConfigError('--log-level', `expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }

  const debounceText = one('workload-health-debounce');
  const workloadHealthDebounceMs = debounceText === undefined ? DEFAULT_WORKLOAD_HEALTH_DEBOUNCE_MS : parseDuration(debounceText);
  const [minDebounce, maxDebounce] = WORKLOAD_HEALTH_DEBOUNCE_RANGE_MS;
  if (workloadHealthDebounceMs === null || workloadHealthDebounceMs < minDebounce || workloadHealthDebounceMs > maxDebounce) {
    throw new AgentConfigError('--workload-health-debounce', `expected a duration from ${formatDuration(minDebounce)} to ${formatDuration(maxDebounce)} such as "2s", got ${JSON.stringify(debounceText)}`);
  }

  const kubeconfig = one('kubeconfig');
  // --context without --kubeconfig is checked once the kubeconfig is known (KUBECONFIG or
  // ~/.kube/config have contexts; the in-cluster service account has none): loadApiServerConfig.
  const context = one('context');
  for (const name of ['token-file', 'kas-ca-cert-file', 'kubeconfig', 'context']) {
    if (one(name) === '') throw new AgentConfigError(`--${name}`, 'must not be empty');
  }

  const duration = (name: string, fallback: string, min: number): number => {
    const text = one(name) ?? fallback;
    const ms = parseDuration(text);
    if (ms === null || ms < min) throw new AgentConfigError(`--${name}`, `expected a duration of at least ${min} ms like "15s" or "2m", got ${JSON.stringify(text)}`);
    return ms;
  };
  const leaderElectionLeaseDurationMs = duration('leader-election-lease-duration', '15s', 1000);
  const leaderElectionRenewDeadlineMs = duration('leader-election-renew-deadline', '10s', 100);
  const leaderElectionRetryPeriodMs = duration('leader-election-retry-period', '2s', 50);
  const timings = validateElectionTimings(leaderElectionLeaseDurationMs, leaderElectionRenewDeadlineMs, leaderElectionRetryPeriodMs);
  if (timings) throw new AgentConfigError('--leader-election-renew-deadline', timings);
  const gitopsReconcilePeriodMs = duration('gitops-reconcile-period', DEFAULT_GITOPS_RECONCILE_PERIOD, 1000);
  const leaseName = one('leader-election-lease-name');
  if (leaseName !== undefined && !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(leaseName)) {
    throw new AgentConfigError('--leader-election-lease-name', `expected a Kubernetes object name (lower case letters, digits, "-", "."), got ${JSON.stringify(leaseName)}`);
  }

  let gitlabExternalUrls: URL[];
  try {
    gitlabExternalUrls = parseGitLabUrls(values.get('gitlab-external-url') ?? []);
  } catch (err) {
    throw new AgentConfigError('--gitlab-external-url', (err as Error).message);
  }
  const ncText = one('flux-notification-controller-url') ?? DEFAULT_NOTIFICATION_CONTROLLER_URL;
  let fluxNotificationControllerUrl: URL;
  try {
    fluxNotificationControllerUrl = new URL(ncText);
  } catch {
    throw new AgentConfigError('--flux-notification-controller-url', `expected an http:// or https:// URL, got ${JSON.stringify(ncText)}`);
  }
  if (fluxNotificationControllerUrl.protocol !== 'http:' && fluxNotificationControllerUrl.protocol !== 'https:') {
    throw new AgentConfigError('--flux-notification-controller-url', `expected an http:// or https:// URL, got ${JSON.stringify(ncText)}`);
  }

  return {
    command: 'run',
    flags: {
      gitlabExternalUrls,
      fluxNotificationControllerUrl,
      leaderElectionLeaseName: leaseName,
      leaderElectionLeaseDurationMs,
      leaderElectionRenewDeadlineMs,
      leaderElectionRetryPeriodMs,
      gitopsReconcilePeriodMs,
      kasAddress,
      tokenFile: one('token-file'),
      kasCaCertFile: one('kas-ca-cert-file'),
      kasHeaders,
      kasConnections,
      observabilityListenAddress,
      kubeconfig,
      context,
      logLevel: logLevel as LevelWithSilent,
      workloadHealthDebounceMs,
    },
  };
}

function parseHeader(text: string): HeaderPair {
  const colon = text.indexOf(':');
  const name = colon > 0 ? text.slice(0, colon).trim() : '';
  const value = colon > 0 ? text.slice(colon + 1).trim() : '';
  if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) {
    throw new AgentConfigError('--kas-header', `expected "Name: value" with an HTTP header name, got ${JSON.stringify(text)}`);
  }
  if (name.toLowerCase() === 'authorization') throw new AgentConfigError('--kas-header', 'Authorization is made from the agent token; it cannot be set here');
  return [name, value];
}

/**
 * The agent token: the contents of --token-file (without its trailing newline), else AGENTK_TOKEN.
 * Throws AgentConfigError when neither gives a non-empty token.
 */
export function readToken(flags: Pick<AgentFlags, 'tokenFile'>, env: NodeJS.ProcessEnv, readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): string {
  if (flags.tokenFile !== undefined) {
    let text: string;
    try {
      text = readFile(flags.tokenFile);
    } catch (err) {
      throw new AgentConfigError('--token-file', `cannot read ${flags.tokenFile}: ${(err as Error).message}`, { cause: err });
    }
    const token = text.trim();
    if (token === '') throw new AgentConfigError('--token-file', `${flags.tokenFile} is empty; expected the agent token`);
    if (!FIELD_VALUE.test(token)) throw new AgentConfigError('--token-file', `${flags.tokenFile} holds characters a token cannot have`);
    return token;
  }
  const token = (env.AGENTK_TOKEN ?? '').trim();
  if (token === '') throw new AgentConfigError('--token-file', 'is required when the AGENTK_TOKEN environment variable is not set (or empty)');
  if (!FIELD_VALUE.test(token)) throw new AgentConfigError('AGENTK_TOKEN', 'holds characters a token cannot have');
  return token;
}
