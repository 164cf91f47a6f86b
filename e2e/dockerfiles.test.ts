/**
 * Keeps Dockerfile.kas and Dockerfile.agentk honest without a Docker engine:
 * - every COPY from the build context names something tracked in git and not in .dockerignore;
 * - the build stage runs exactly what CI and the README run (npm ci, npm run build);
 * - base images are pinned, the final stage runs as a numeric non-root user, carries package.json
 *   (the ES modules need "type": "module"), and the agentk image copies no kas code;
 * - the final image is assembled the way Docker would (the deps stage's RUN commands executed for
 *   real in a temporary folder, the build stage's output made with `npm run build`), and its
 *   ENTRYPOINT starts there: this proves the entry point exists and loads with the image's
 *   production dependencies and folders only.
 */
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { absoluteDestination, parseDockerfile, type Stage } from './support/dockerfile.js';
import { REPO_ROOT } from './support/helm.js';
import { NODE_FLAGS } from '../src/shared/node-flags.js';

const DOCKERFILES = ['Dockerfile.kas', 'Dockerfile.agentk'] as const;
const tracked = new Set(execFileSync('git', ['ls-files'], { cwd: REPO_ROOT, encoding: 'utf8' }).split('\n').filter(Boolean));
const dockerignore = readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const ciScript = readFileSync(path.join(REPO_ROOT, '.ci', 'run'), 'utf8');
const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');

/** "npm ci --no-audit --no-fund" -> "npm ci": the flags that only silence npm do not change what is built. */
function essence(command: string): string {
  return command.replace(/\s+--no-(audit|fund)\b/g, '').trim();
}

function buildStage(stages: Stage[]): Stage {
  const found = stages.filter((s) => s.runs.some((r) => essence(r) === 'npm run build'));
  if (found.length !== 1) throw new Error(`expected exactly one stage that runs "npm run build", found ${found.length}`);
  return found[0]!;
}

function ignoredByDockerignore(source: string): string | undefined {
  const clean = source.replace(/^\.\//, '').replace(/\/$/, '');
  return dockerignore.find((pattern) => {
    const p = pattern.replace(/^\//, '').replace(/\/$/, '');
    if (p.startsWith('*.')) return clean.endsWith(p.slice(1));
    return clean === p || clean.startsWith(`${p}/`);
  });
}

describe.each(DOCKERFILES)('%s', (file) => {
  const stages = parseDockerfile(path.join(REPO_ROOT, file));
  const final = stages.at(-1)!;

  test('every base image is pinned to an exact version', () => {
    for (const stage of stages) {
      const pinned = /@sha256:[0-9a-f]{64}$/.test(stage.image) || /:\d+\.\d+\.\d+[\w.-]*$/.test(stage.image);
      if (!pinned) throw new Error(`${file}: FROM ${stage.image} is not pinned to an exact version (name:X.Y.Z or a digest)`);
    }
  });

  test('every COPY from the build context names something tracked in git and not excluded by .dockerignore', () => {
    for (const stage of stages) {
      for (const copy of stage.copies.filter((c) => c.from === null)) {
        for (const source of copy.sources) {
          const rel = source.replace(/^\.\//, '').replace(/\/$/, '');
          const isTracked = tracked.has(rel) || [...tracked].some((f) => f.startsWith(`${rel}/`));
          if (!isTracked) throw new Error(`${file}:${copy.line}: COPY ${source}: nothing by that name is tracked in git, so a build from a clean clone would fail`);
          const ignored = ignoredByDockerignore(rel);
          if (ignored) throw new Error(`${file}:${copy.line}: COPY ${source} is excluded from the build context by .dockerignore ("${ignored}")`);
        }
      }
    }
  });

  test('the build stage runs exactly what CI and the README run: npm ci, then npm run build', () => {
    const build = buildStage(stages);
    expect(build.runs.map(essence)).toEqual(['npm ci', 'npm run build']);
    const ciRun = build.runs[0]!;
    if (!ciScript.includes(ciRun)) throw new Error(`${file} runs "${ciRun}" but .ci/run does not: the image must be built the way CI builds`);
    if (!/^npm test$/m.test(ciScript)) throw new Error('.ci/run must run exactly "npm test"');
    if (!readme.includes('npm ci')) throw new Error('README.md does not mention npm ci, the install command the image runs');
    const scripts = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    expect(scripts.build).toBeDefined();
  });

  test('every other RUN installs production dependencies (npm ci --omit=dev) or drops kas-only ones', () => {
    const build = buildStage(stages);
    for (const stage of stages.filter((s) => s !== build)) {
      for (const run of stage.runs) {
        const ok = essence(run) === 'npm ci --omit=dev' || /^npm uninstall --no-save [a-z@/ -]+$/.test(essence(run));
        if (!ok) throw new Error(`${file}: unexpected RUN in stage ${stage.name ?? stage.index}: ${run}`);
      }
    }
  });

  test('the final stage runs as a numeric, non-root user and carries package.json', () => {
    const user = final.user ?? '';
    if (!/^[1-9]\d*(:\d+)?$/.test(user)) throw new Error(`${file}: USER is ${JSON.stringify(user)}; it must be a numeric non-root uid so that Kubernetes can verify runAsNonRoot`);
    const copiesPackageJson = final.copies.some((c) => c.from === null && c.sources.includes('package.json'));
    if (!copiesPackageJson) throw new Error(`${file}: the final stage must COPY package.json ("type": "module" makes Node load dist/ as ES modules)`);
  });

  test('ENTRYPOINT runs node, with the programs\' Node options (src/shared/node-flags.ts), on a file that npm run build produces and the final stage copies', () => {
    const entry = final.entrypoint;
    const expected = ['node', ...NODE_FLAGS];
    if (!entry || entry.length < expected.length + 1 || expected.some((v, i) => entry[i] !== v)) {
      throw new Error(`${file}: ENTRYPOINT must be ${JSON.stringify([...expected, '<file>'])}, got ${JSON.stringify(entry)}`);
    }
    const script = entry[expected.length]!;
    const inImage = path.posix.resolve(final.workdir, script);
    const copy = final.copies.find((c) => c.from !== null && inImage.startsWith(`${absoluteDestination(final, c)}/`));
    if (!copy) throw new Error(`${file}: no COPY --from puts ${inImage} into the final image`);
    const build = buildStage(stages);
    if (copy.from !== build.name) throw new Error(`${file}: ${inImage} comes from stage ${copy.from}, not from the build stage`);
    // Where the file is in the build stage, and so in the checkout after \`npm run build\` (the
    // e2e global setup ran it in this test run).
    const inBuildStage = path.posix.join(copy.sources[0]!, path.posix.relative(absoluteDestination(final, copy), inImage));
    const inCheckout = path.join(REPO_ROOT, path.posix.relative(build.workdir, inBuildStage));
    if (!existsSync(inCheckout)) throw new Error(`${file}: ENTRYPOINT needs ${inBuildStage} from the build stage, but npm run build did not produce ${inCheckout}`);
  });

  if (file === 'Dockerfile.agentk') {
    test('the agentk image copies no kas code (src/broker, dist/src/broker)', () => {
      for (const copy of final.copies) {
        for (const source of copy.sources) {
          if (/(^|\/)broker(\/|$)/.test(source)) throw new Error(`${file}:${copy.line}: the agentk image copies kas code: COPY ${source}`);
        }
        if (copy.from === null && copy.sources.some((s) => /^(\.\/)?(src|dist)\/?$/.test(s))) throw new Error(`${file}:${copy.line}: the agentk image copies the whole ${copy.sources.join(' ')} (kas code included)`);
      }
    });
  }
});

/** Runs a command to completion; rejects with its output when it fails. */
function run(command: string, args: string[], cwd: string, timeoutMs = 240_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, env: { ...process.env, NODE_ENV: undefined } }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')} (in ${cwd}) failed: ${error.message}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`));
      else resolve(`${stdout}${stderr}`);
    });
  });
}

describe('the images, assembled without Docker', () => {
  let dir: string;
  const stageRoots = new Map<string, string>();

  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'image-assembly-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** What a stage's first `steps` instructions produce, including what the stages it copies from produce. */
  function stageKey(stages: Stage[], stage: Stage, steps = stage.steps.length): string {
    return JSON.stringify([
      stage.image,
      stage.workdir,
      stage.steps.slice(0, steps).map((step) => {
        if ('run' in step) return { run: step.run };
        const from = step.copy.from === null ? null : stageKey(stages, stages.find((s) => s.name === step.copy.from)!);
        return { copy: [from, step.copy.sources, step.copy.destination] };
      }),
    ]);
  }

  /**
   * The root folder of a stage after its instructions ran. The build stage's RUN lines were checked
   * above to be `npm ci` and `npm run build`, which CI runs in the checkout; its output is made with
   * `npm run build -- --outDir <stage>/dist`. Every other stage's COPY and RUN lines are executed
   * here as written, in order, in a folder standing for the stage's file system. A stage that
   * starts with the same instructions as one already assembled starts from a copy of it.
   */
  async function assemble(stages: Stage[], stage: Stage): Promise<string> {
    const key = stageKey(stages, stage);
    const cached = stageRoots.get(key);
    if (cached) return cached;
    const root = mkdtempSync(path.join(dir, `stage-${stage.name ?? stage.index}-`));
    const inRoot = (p: string) => path.join(root, p);
    let done = 0;
    for (let n = stage.steps.length - 1; n > 0 && stage !== buildStage(stages); n--) {
      const prefix = stageRoots.get(stageKey(stages, stage, n));
      if (prefix) {
        cpSync(prefix, root, { recursive: true });
        done = n;
        break;
      }
    }
    mkdirSync(inRoot(stage.workdir), { recursive: true });
    if (stage === buildStage(stages)) {
      await run('npm', ['run', 'build', '--silent', '--', '--outDir', inRoot(`${stage.workdir}/dist`)], REPO_ROOT);
    } else {
      for (const step of stage.steps.slice(done)) {
        if ('run' in step) {
          await run('bash', ['-c', step.run], inRoot(stage.workdir));
          continue;
        }
        const { copy } = step;
        const destination = inRoot(absoluteDestination(stage, copy));
        for (const source of copy.sources) {
          let from: string;
          if (copy.from === null) {
            from = path.join(REPO_ROOT, source);
          } else {
            const other = stages.find((s) => s.name === copy.from);
            if (!other) throw new Error(`COPY --from=${copy.from}: no such stage`);
            from = path.join(await assemble(stages, other), source);
          }
          if (!existsSync(from)) throw new Error(`COPY ${copy.from ? `--from=${copy.from} ` : ''}${source}: ${from} does not exist after the stage ran`);
          const into = copy.destination.endsWith('/') && !statSync(from).isDirectory() ? path.join(destination, path.basename(from)) : destination;
          cpSync(from, into, { recursive: true });
        }
      }
    }
    stageRoots.set(key, root);
    return root;
  }

  test.each(DOCKERFILES)('%s: the ENTRYPOINT starts from the assembled image (--help)', async (file) => {
    const stages = parseDockerfile(path.join(REPO_ROOT, file));
    const final = stages.at(-1)!;
    const root = await assemble(stages, final);
    const workdir = path.join(root, final.workdir);
    const [, ...args] = final.entrypoint!;
    const script = args.find((a) => !a.startsWith('-'));
    if (!script || !existsSync(path.join(workdir, script))) throw new Error(`${file}: ENTRYPOINT ${script} is not in the assembled image`);
    const out = await run(process.execPath, [...args, '--help'], workdir, 30_000);
    expect(out).toMatch(/Usage/i);
    if (file === 'Dockerfile.agentk') {
      expect(existsSync(path.join(workdir, 'dist', 'src', 'broker'))).toBe(false);
      expect(existsSync(path.join(workdir, 'node_modules', 'fastify'))).toBe(false);
    }
  }, 300_000);
});
