/**
 * The long fuzz run: the generators and targets of test/security/fuzz.test.ts (hostile frames,
 * handshakes, msgpack shapes and HTTP heads against a real kas and a real agentk on loopback), for
 * a bounded time and count. Prints cases run, how they ended, failures with the seed that
 * reproduces each, and memory; exits 1 when anything failed.
 *
 *   npm run fuzz                                   60 s, seed from the clock
 *   npm run fuzz -- --duration 10m --cases 100000 --seed 1234
 *   npm run fuzz -- --targets kas-raw,agentk-open  only some targets
 *
 * A failure is reproduced by running the suite with that case's seed as the first seed:
 * `FUZZ_SEED=<seed> npm run jest -- test/security/fuzz.test.ts`, or `npm run fuzz -- --seed <seed> --cases 4`
 * (cases go round robin over the targets, so a seed hits the same target only with the same target list).
 */
import { parseDuration } from '../src/shared/duration.js';
import { FUZZ_TARGETS, describeFailures, runFuzz, type FuzzTargetName } from '../test/security/fuzz-targets.js';

interface Args {
  durationMs: number;
  maxCases: number;
  seed: number;
  targets: FuzzTargetName[];
}

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: npm run fuzz -- [--duration 60s] [--cases N] [--seed N] [--targets ${FUZZ_TARGETS.join(',')}]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const args: Args = { durationMs: 60_000, maxCases: Number.MAX_SAFE_INTEGER, seed: Date.now() % 2 ** 31, targets: FUZZ_TARGETS };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (value === undefined) usage(`${flag} needs a value`);
    i++;
    switch (flag) {
      case '--duration': {
        const ms = parseDuration(value);
        if (ms === null || ms <= 0) usage(`--duration: expected a duration such as "60s" or "10m", got ${JSON.stringify(value)}`);
        args.durationMs = ms;
        break;
      }
      case '--cases':
        args.maxCases = Number(value);
        if (!Number.isInteger(args.maxCases) || args.maxCases <= 0) usage(`--cases: expected a positive integer, got ${JSON.stringify(value)}`);
        break;
      case '--seed':
        args.seed = Number(value);
        if (!Number.isInteger(args.seed)) usage(`--seed: expected an integer, got ${JSON.stringify(value)}`);
        break;
      case '--targets': {
        const names = value.split(',');
        const unknown = names.filter((n) => !FUZZ_TARGETS.includes(n as FuzzTargetName));
        if (unknown.length > 0) usage(`--targets: unknown ${unknown.join(', ')}`);
        args.targets = names as FuzzTargetName[];
        break;
      }
      default:
        usage(`unknown flag ${flag}`);
    }
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
process.stdout.write(`fuzzing ${args.targets.join(', ')} for ${args.durationMs / 1000} s (at most ${args.maxCases === Number.MAX_SAFE_INTEGER ? 'unlimited' : args.maxCases} cases), first seed ${args.seed}\n`);
const report = await runFuzz({ durationMs: args.durationMs, maxCases: args.maxCases, seed: args.seed, targets: args.targets, log: (line) => process.stdout.write(`${line}\n`) });
process.stdout.write(`\ncases run: ${report.cases} in ${(report.durationMs / 1000).toFixed(1)} s (seeds ${report.seed} to ${report.seed + report.cases - 1})\n`);
for (const [t, n] of Object.entries(report.byTarget)) process.stdout.write(`  ${t}: ${n}\n`);
process.stdout.write('how cases ended:\n');
for (const [o, n] of Object.entries(report.outcomes).sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${String(n).padStart(6)}  ${o}\n`);
process.stdout.write(`health checks through another agent: ${report.healthChecks}\n`);
process.stdout.write(`heap: ${report.heapStartMb.toFixed(0)} MB at start, ${report.heapEndMb.toFixed(0)} MB at end\n`);
process.stdout.write(`failures: ${report.failures.length}\n`);
if (report.failures.length > 0) process.stdout.write(`${describeFailures(report)}\n`);
process.exit(report.failures.length > 0 ? 1 : 0);
