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
 *
 * --initial-old-space-size=128: no full collection below 128 MiB of old generation plus external
 * memory allocated since the last one. Each 64 KiB socket read is a new buffer counted as external
 * memory, and dead young ones are freed only by a scavenge, which V8 starts for them at 32 MiB; under
 * the 46-76 MiB limit V8 otherwise set, bulk transfers made agentk do a full collection every 70 ms
 * in about half the runs (bulk at half speed). docs/configuration.md has the measurements;
 * e2e/gc-promotion.test.ts checks it.
 */
export const NODE_FLAGS: readonly string[] = ['--min-semi-space-size=16', '--initial-old-space-size=128'];
