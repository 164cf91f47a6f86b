#!/usr/bin/env node
/** kas's entry point: runs the program (cli.ts) and exits with its code. */
import { EXIT_FAILURE, runKas } from './cli.js';

const code = await runKas(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).catch((err: unknown) => {
  process.stderr.write(`kas: ${(err as Error).stack ?? String(err)}\n`);
  return EXIT_FAILURE;
});
process.exit(code);
