/** Command-line plumbing shared by the small bench tools (ab, gc-probe, kubectl-long-link). */
import { killAllNow } from './proc.js';

/** Every value given for option `name` (`--name value`, repeatable), in order. */
export function optionValues(argv: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) if (argv[i] === name && argv[i + 1] !== undefined) out.push(argv[i + 1]!);
  return out;
}

/**
 * Runs a tool's `main`: Ctrl-C kills the processes it started (exit 130), and a failure is printed
 * and kills them too (exit 1).
 */
export function runMain(main: () => Promise<void>): void {
  process.on('SIGINT', () => {
    killAllNow();
    process.exit(130);
  });
  main().catch((err: unknown) => {
    console.error(err);
    killAllNow();
    process.exit(1);
  });
}
