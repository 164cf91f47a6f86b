#!/usr/bin/env node
/**
 * kas entry point. `kas --config <file.yaml>` runs from a configuration file; `kas` without one
 * runs the embedded default (standalone development setup in ./.dev). Exit codes: 0 clean
 * shutdown, 1 runtime failure, 2 bad flags or configuration.
 */
import { parseArgs } from 'node:util';
import { BUILD_INFO } from '../shared/version.js';
import { KasApp } from './app.js';
import { loadConfigFile } from './configuration/load.js';
import { ConfigError } from './configuration/schema.js';
import { devInstructions, ensureDevSetup, type DevSetup } from './standalone/dev-setup.js';

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

Signals: SIGTERM or SIGINT drains agents and in-flight requests, then exits 0.
Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad flags or configuration.
`;

function fail(code: number, message: string): never {
  process.stderr.write(`kas: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let values: { config?: string; 'dev-dir'?: string; help?: boolean; version?: boolean };
  try {
    ({ values } = parseArgs({
      options: { config: { type: 'string' }, 'dev-dir': { type: 'string' }, help: { type: 'boolean' }, version: { type: 'boolean' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail(2, `${(err as Error).message}\n\n${KAS_HELP}`);
  }
  if (values.help) {
    process.stdout.write(KAS_HELP);
    return;
  }
  if (values.version) {
    process.stdout.write(`${BUILD_INFO.version} (${BUILD_INFO.commit})\n`);
    return;
  }
  let dev: DevSetup | null = null;
  let configFile = values.config;
  if (configFile === undefined) {
    dev = await ensureDevSetup(values['dev-dir'] ?? '.dev');
    configFile = dev.configFile;
  }
  let app: KasApp;
  try {
    app = new KasApp({ config: loadConfigFile(configFile) });
  } catch (err) {
    fail(2, (err as Error).message);
  }
  try {
    await app.start();
  } catch (err) {
    app.logger.fatal({ err }, 'kas failed to start');
    await app.stop().catch(() => undefined);
    process.exit(1);
  }
  if (dev) process.stderr.write(devInstructions(dev, app.addresses.agent!, app.addresses.kubernetes_api!));
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) {
      app.logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    app.logger.info({ signal }, 'signal received: draining');
    app.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        app.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`kas: ${err instanceof ConfigError ? err.message : (err as Error).stack ?? String(err)}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
