#!/usr/bin/env node
/** agentk's entry point: runs the program (cli.ts) and exits with its code. */
import { runAgentk } from './cli.js';

const code = await runAgentk(process.argv.slice(2), process.env, { stdout: process.stdout, stderr: process.stderr });
process.exit(code);
