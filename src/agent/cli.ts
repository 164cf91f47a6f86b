/**
 * agentk as a program: flags in, exit code out. 0 after a clean shutdown (SIGTERM or SIGINT: the
 * sessions are drained, then everything closes), 1 when agentk cannot run, 2 for bad flags or
 * configuration (the message names the flag and what was expected). main.ts only calls this.
 */
import { readFileSync } from 'node:fs';
import { EXIT_BAD_CONFIGURATION, EXIT_FAILURE, EXIT_OK, hasErrorCode } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { createAgentk, type Agentk } from './app.js';
import { AgentConfigError } from './config-error.js';
import { helpText, parseFlags, readToken, type AgentFlags } from './flags.js';
import { loadApiServerConfig } from './kubernetes-api/api-server.js';
import type { AgentOptions } from './app.js';
import { processSignals, type ProgramIo } from '../shared/program-io.js';

export interface CliIo extends ProgramIo {
  /** Test hook: receives the agent once it is created. */
  onAgent?: (agent: Agentk) => void;
  /** Test hook: overrides options the flags do not reach (backoff, limits). */
  extraOptions?: Partial<AgentOptions>;
}

export { EXIT_BAD_CONFIGURATION, EXIT_FAILURE, EXIT_OK };


/** Resolves the files and environment the flags name into AgentOptions. Throws AgentConfigError. */
export function agentOptionsFromFlags(flags: AgentFlags, env: NodeJS.ProcessEnv): Omit<AgentOptions, 'logger'> {
  const token = readToken(flags, env);
  let kasCaCert: Buffer | undefined;
  if (flags.kasCaCertFile !== undefined) {
    try {
      kasCaCert = readFileSync(flags.kasCaCertFile);
    } catch (err) {
      throw new AgentConfigError('--kas-ca-cert-file', `cannot read ${flags.kasCaCertFile}: ${(err as Error).message}`, { cause: err });
    }
    if (!kasCaCert.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) {
      throw new AgentConfigError('--kas-ca-cert-file', `${flags.kasCaCertFile} holds no PEM certificate`);
    }
  }
  const apiServer = loadApiServerConfig({ kubeconfig: flags.kubeconfig, context: flags.context, env });
  return {
    kasAddress: flags.kasAddress,
    token,
    kasCaCert,
    kasCaCertFile: flags.kasCaCertFile,
    kasHeaders: flags.kasHeaders,
    kasConnections: flags.kasConnections,
    observabilityListenAddress: flags.observabilityListenAddress,
    apiServer,
    podName: env.POD_NAME,
    podNamespace: env.POD_NAMESPACE,
    podUid: env.POD_UID,
    telemetryEnvironment: env,
    workloadHealth: { debounceMs: flags.workloadHealthDebounceMs, maxWaitMs: 5 * flags.workloadHealthDebounceMs },
    leaderElection: {
      leaseName: flags.leaderElectionLeaseName,
      leaseDurationMs: flags.leaderElectionLeaseDurationMs,
      renewDeadlineMs: flags.leaderElectionRenewDeadlineMs,
      retryPeriodMs: flags.leaderElectionRetryPeriodMs,
    },
    gitopsReconcilePeriodMs: flags.gitopsReconcilePeriodMs,
    flux: { gitlabUrls: flags.gitlabExternalUrls, notificationControllerUrl: flags.fluxNotificationControllerUrl },
  };
}

/** Runs agentk until a shutdown signal; returns the exit code. */
export async function runAgentk(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  let options: Omit<AgentOptions, 'logger'>;
  let logLevel: AgentFlags['logLevel'];
  try {
    const command = parseFlags(argv);
    if (command.command === 'help') {
      io.stdout.write(helpText());
      return EXIT_OK;
    }
    logLevel = command.flags.logLevel;
    options = agentOptionsFromFlags(command.flags, env);
  } catch (err) {
    if (hasErrorCode(err, 'BAD_CONFIGURATION')) {
      io.stderr.write(`agentk: ${err.message}\nRun "agentk --help" for the flags.\n`);
      return EXIT_BAD_CONFIGURATION;
    }
    throw err;
  }

  const logger = createLogger({ name: 'agentk', level: logLevel, destination: io.logDestination });
  const flush = () => new Promise<void>((resolve) => logger.flush(() => resolve()));

  // The first signal starts the drain; a second one gives up waiting for it.
  let requestShutdown!: () => void;
  let forceExit!: () => void;
  const shutdown = new Promise<void>((resolve) => (requestShutdown = resolve));
  const forced = new Promise<number>((resolve) => (forceExit = () => resolve(EXIT_FAILURE)));
  let signals = 0;
  const signalled = (signal: string) => {
    signals++;
    if (signals === 1) {
      logger.info({ signal }, 'shutdown requested: draining the connections to kas');
      requestShutdown();
    } else {
      logger.warn({ signal }, 'second shutdown request: exiting without waiting for the drain');
      forceExit();
    }
  };
  const unregister = (io.onShutdownSignal ?? processSignals)(signalled);

  try {
    let agent: Agentk;
    try {
      agent = createAgentk({ ...options, ...io.extraOptions, logger });
      io.onAgent?.(agent);
      await agent.start();
    } catch (err) {
      logger.fatal({ err }, 'agentk cannot start');
      return EXIT_FAILURE;
    }
    await shutdown;
    return await Promise.race([agent.stop().then(() => EXIT_OK), forced]);
  } finally {
    unregister();
    await flush();
  }
}
