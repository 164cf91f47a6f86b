/**
 * kas as a program: flags in, exit code out. 0 after a clean shutdown (SIGTERM or SIGINT: not ready
 * at once, serving on for shutdown_delay, then agents and in-flight requests are drained and
 * everything closes), --help or --version; 1 when kas cannot
 * run; 2 for bad flags or configuration, found before anything listens (the message names the flag
 * or key and what was expected). main.ts only calls this.
 */
import { parseArgs } from 'node:util';
import { EXIT_BAD_CONFIGURATION, EXIT_FAILURE, EXIT_OK, hasErrorCode } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { BUILD_INFO } from '../shared/version.js';
import { processSignals, type ProgramIo } from '../shared/program-io.js';
import { KasApp } from './app.js';
import { loadConfigFile } from './configuration/load.js';
import { devInstructions, ensureDevSetup, type DevSetup } from './standalone/dev-setup.js';

export { EXIT_BAD_CONFIGURATION, EXIT_FAILURE, EXIT_OK };

export const KAS_HELP = `kas ${BUILD_INFO.version}: the GitLab agent server for Kubernetes (TypeScript implementation)

Usage:
  kas --config <file.yaml>    run with a configuration file (see docs/configuration.md)
  kas                         run the embedded default: standalone mode with a development setup
                              (tokens, certificate, configuration) made in ./.dev on first start

Options:
  --config <file>    configuration file (YAML)
  --dev-dir <dir>    folder of the embedded default's development setup (default: .dev)
  --version          print the version and exit
  --help             print this help and exit

Signals: SIGTERM or SIGINT turns kas not ready, keeps serving for shutdown_delay (default 0s),
then drains agents and in-flight requests and exits 0; a second signal exits at once.
Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad flags or configuration.
`;

/** Where kas writes, and the hooks that let a test run it without signals or a process exit. */
export interface KasCliIo extends ProgramIo {
  /** Test hook: receives the app once it has started (its bound addresses are known then). */
  onStarted?: (app: KasApp) => void;
}

type KasFlags = { command: 'help' } | { command: 'version' } | { command: 'run'; config: string | undefined; devDir: string };


/** Parses kas's arguments (without the node and script paths); throws node:util's parse error. */
function parseFlags(argv: readonly string[]): KasFlags {
  const { values } = parseArgs({
    args: [...argv],
    options: { config: { type: 'string' }, 'dev-dir': { type: 'string' }, help: { type: 'boolean' }, version: { type: 'boolean' } },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return { command: 'help' };
  if (values.version) return { command: 'version' };
  return { command: 'run', config: values.config, devDir: values['dev-dir'] ?? '.dev' };
}

/**
 * Loads the configuration file and builds the app from it. Every module reads the files it needs
 * (TLS, secrets, tokens) while it is created, so a mistake in the configuration throws a ConfigError
 * (CONFIG_INVALID, exit 2) here, before anything listens; anything else thrown here is a bug (exit 1).
 */
function buildApp(configFile: string, io: KasCliIo): KasApp {
  const config = loadConfigFile(configFile);
  const logger = createLogger({ name: 'kas', level: config.observability.logging.level, destination: io.logDestination });
  return new KasApp({ config, logger });
}

/** Runs kas until a shutdown signal; returns the exit code. */
export async function runKas(argv: readonly string[], io: KasCliIo): Promise<number> {
  let flags: KasFlags;
  try {
    flags = parseFlags(argv);
  } catch (err) {
    io.stderr.write(`kas: ${(err as Error).message}\n\n${KAS_HELP}\n`);
    return EXIT_BAD_CONFIGURATION;
  }
  if (flags.command === 'help') {
    io.stdout.write(KAS_HELP);
    return EXIT_OK;
  }
  if (flags.command === 'version') {
    io.stdout.write(`${BUILD_INFO.version} (${BUILD_INFO.commit})\n`);
    return EXIT_OK;
  }

  let dev: DevSetup | null = null;
  let app: KasApp;
  try {
    let configFile = flags.config;
    if (configFile === undefined) {
      dev = await ensureDevSetup(flags.devDir);
      configFile = dev.configFile;
    }
    app = buildApp(configFile, io);
  } catch (err) {
    if (hasErrorCode(err, 'CONFIG_INVALID')) {
      io.stderr.write(`kas: ${err.message}\n`);
      return EXIT_BAD_CONFIGURATION;
    }
    io.stderr.write(`kas: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT_FAILURE;
  }

  const flush = () => new Promise<void>((resolve) => app.logger.flush(() => resolve()));
  try {
    try {
      await app.start();
    } catch (err) {
      app.logger.fatal({ err }, 'kas failed to start');
      await app.stop().catch(() => undefined);
      return EXIT_FAILURE;
    }
    if (dev) io.stderr.write(devInstructions(dev, app.addresses.agent!, app.addresses.kubernetes_api!));
    io.onStarted?.(app);
    return await untilShutdown(app, io);
  } finally {
    await flush();
  }
}

/** Waits for a shutdown request and drains; a second request gives up waiting for the drain. */
async function untilShutdown(app: KasApp, io: KasCliIo): Promise<number> {
  let settle!: (code: number) => void;
  const exit = new Promise<number>((resolve) => (settle = resolve));
  let signals = 0;
  const signalled = (signal: string) => {
    signals++;
    if (signals > 1) {
      app.logger.warn({ signal }, 'second signal: exiting now');
      settle(EXIT_FAILURE);
      return;
    }
    app.logger.info({ signal }, 'signal received: draining');
    app.shutdown().then(
      () => settle(EXIT_OK),
      (err: unknown) => {
        app.logger.error({ err }, 'shutdown failed');
        settle(EXIT_FAILURE);
      },
    );
  };
  const unregister = (io.onShutdownSignal ?? processSignals)(signalled);
  try {
    return await exit;
  } finally {
    unregister();
  }
}
