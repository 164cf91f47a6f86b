/**
 * The Node.js options kas and agentk run with: the images' ENTRYPOINTs, `npm start`, the agentk
 * command kas prints in standalone mode and the benchmarks pass exactly these (e2e/dockerfiles.test.ts
 * and src/shared/node-flags.test.ts keep them equal); docs/configuration.md ("Node.js options")
 * explains them. The `#!` lines of the `kas` and `agentk` commands stay plain `node` (`env -S` is
 * not everywhere); the programs run the same without the options, only slower.
 *
 * --min-semi-space-size=16: V8's young generation is 16 MiB a half (Node's largest default) from
 * the start, instead of starting at 1 MiB and shrinking back after idle periods and while data
 * streams through; docs/configuration.md has the measurements (small requests after bulk transfers
 * cost kas 61-70 us instead of 78-82).
 */
export const NODE_FLAGS: readonly string[] = ['--min-semi-space-size=16'];
