/**
 * The fuzz suite, short: about 20 s of hostile frames, handshakes and HTTP heads against a real kas
 * (agent listener, and REPLY heads of proxied requests) and a real agentk (raw frames, and hostile
 * request heads on streams a fake kas opens). `npm run fuzz` runs the same cases for longer.
 */
import { describeFailures, runFuzz } from './fuzz-targets.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed) || Date.now();

test('hostile peers and clients: every case ends in a coded close or reset, nothing crashes, agent 1 keeps serving, memory stays bounded', async () => {
  const report = await runFuzz({ durationMs: 18_000, maxCases: 5000, seed: SEED });
  const summary = `${report.cases} cases from seed ${report.seed} in ${report.durationMs} ms (${JSON.stringify(report.byTarget)}), heap ${report.heapStartMb.toFixed(0)} → ${report.heapEndMb.toFixed(0)} MB`;
  if (report.failures.length > 0) throw new Error(`fuzzing found ${report.failures.length} problem(s); reproduce with FUZZ_SEED=<seed>:\n${describeFailures(report)}\n${summary}`);
  expect(report.cases).toBeGreaterThan(40);
  expect(report.healthChecks).toBeGreaterThan(3);
  // Generous: a leak of a few KB per case over hundreds of cases would show; GC timing does not.
  expect(report.heapEndMb - report.heapStartMb).toBeLessThan(150);
}, 90_000);
