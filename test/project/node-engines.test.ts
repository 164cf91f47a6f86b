/**
 * The Node versions the project supports are the ones package.json `engines.node` declares (the
 * README says the same, .ci/run refuses any other). That claim must hold for everything npm
 * installs: every Node version in our range must satisfy each installed package's own
 * `engines.node`, or `npm ci` warns EBADENGINE and the package may not work there.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/** The part of the `semver` package (installed with the test tools) this test uses. */
interface Semver {
  satisfies(version: string, range: string): boolean;
  minVersion(range: string): { version: string } | null;
  validRange(range: string): string | null;
}
const semver = createRequire(import.meta.url)('semver') as Semver;

const root = join(import.meta.dirname, '..', '..');

interface PackageJson {
  name?: string;
  version?: string;
  engines?: { node?: string };
}

function readPackage(dir: string): PackageJson | null {
  try {
    return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson;
  } catch {
    return null;
  }
}

/** Every package installed under `node_modules` (nested ones too), with its folder. */
function installedPackages(nodeModules: string, out: Array<{ dir: string; pkg: PackageJson }> = []): Array<{ dir: string; pkg: PackageJson }> {
  let names: string[];
  try {
    names = readdirSync(nodeModules);
  } catch {
    return out;
  }
  for (const name of names) {
    if (name.startsWith('.')) continue;
    const dirs = name.startsWith('@') ? readdirSync(join(nodeModules, name)).map((n) => join(nodeModules, name, n)) : [join(nodeModules, name)];
    for (const dir of dirs) {
      const pkg = readPackage(dir);
      if (pkg?.name) out.push({ dir, pkg });
      installedPackages(join(dir, 'node_modules'), out);
    }
  }
  return out;
}

/**
 * Node versions to probe: each release line's x.0.0 and the minor versions where packages draw
 * their lines, plus the lowest version of each part of `range`. Those in `range` are the versions
 * we claim to support.
 */
function claimedVersions(range: string): string[] {
  const probes = new Set<string>();
  for (let major = 16; major <= 30; major++) {
    for (const minor of [0, 5, 9, 12, 13, 16, 18, 19, 20, 99]) probes.add(`${major}.${minor}.0`);
  }
  for (const part of range.split('||')) {
    const min = semver.minVersion(part.trim());
    if (min) probes.add(min.version);
  }
  return [...probes].filter((v) => semver.satisfies(v, range));
}

const ours = readPackage(root)?.engines?.node ?? '';

test('package.json declares a Node range that semver understands, and this Node is in it', () => {
  expect(semver.validRange(ours)).not.toBeNull();
  expect(semver.satisfies(process.versions.node, ours)).toBe(true);
});

test('every Node version of our engines range satisfies the engines.node of every installed package (no EBADENGINE at npm ci)', () => {
  const claimed = claimedVersions(ours);
  expect(claimed.length).toBeGreaterThan(0);
  const misfits: string[] = [];
  for (const { dir, pkg } of installedPackages(join(root, 'node_modules'))) {
    const theirs = pkg.engines?.node;
    if (typeof theirs !== 'string' || semver.validRange(theirs) === null) continue;
    const outside = claimed.filter((v) => !semver.satisfies(v, theirs));
    if (outside.length > 0) misfits.push(`${pkg.name}@${pkg.version} (${dir.slice(root.length + 1)}) wants node ${theirs}; not ${outside.join(', ')}`);
  }
  expect(misfits).toEqual([]);
});
