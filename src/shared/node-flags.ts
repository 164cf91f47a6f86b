/**
 * The Node.js options kas and agentk run with: the images' ENTRYPOINTs, `npm start`, the `kas` and
 * `agentk` commands (their `#!` lines) and the benchmarks pass exactly these (e2e/dockerfiles.test.ts
 * and src/shared/node-flags.test.ts keep them equal); docs/configuration.md ("Node.js options") explains them.
 *
 * --min-semi-space-size=16: V8's young generation stays at 16 MiB a half (Node's largest default)
 * instead of shrinking to 1 MiB whenever few objects survive, which is exactly what streaming does:
 * every chunk's objects die young, V8 shrinks the young generation, and then collects it after
 * every ~1 MiB allocated (70 collections of ~3 ms per GiB through kas). Measured (bench/ab.ts, 4-5
 * interleaved rounds): bulk 480 -> 637 MB/s, CPU per 100 MB kas 130 -> 112 ms and agentk
 * 160 -> 108 ms; small requests at 32 connections kas 82 -> 61 us and agentk 79 -> 71 us per request.
 */
export const NODE_FLAGS: readonly string[] = ['--min-semi-space-size=16'];
