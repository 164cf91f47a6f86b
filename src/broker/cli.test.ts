/**
 * kas as a program (cli.ts, what main.ts runs): --help and --version, exit code 2 for bad flags and
 * for every configuration mistake (with a message naming the key), exit 1 when a listener cannot
 * start, and a whole run: a standalone configuration starts, a shutdown signal drains, exit 0.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { stringify } from 'yaml';
import { waitFor } from '../../test/support/wait.js';
import { BUILD_INFO } from '../shared/version.js';
import type { KasApp } from './app.js';
import { EXIT_BAD_CONFIGURATION, EXIT_FAILURE, EXIT_OK, runKas, type KasCliIo } from './cli.js';

/** Collects what kas writes; the logs go to their own stream, parsed as JSON lines. */
function io(extra: Partial<KasCliIo> = {}) {
  const collect = () => {
    const stream = new PassThrough();
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
  };
  const stdout = collect();
  const stderr = collect();
  const logs = collect();
  return {
    io: { stdout: stdout.stream, stderr: stderr.stream, logDestination: logs.stream, onShutdownSignal: () => () => {}, ...extra } satisfies KasCliIo,
    get out() {
      return stdout.text();
    },
    get err() {
      return stderr.text();
    },
    get logs(): Array<Record<string, unknown>> {
      return logs
        .text()
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
  };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kas-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every listener on a free loopback port: tests run side by side. */
function standaloneConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    agent: { listen: { address: '127.0.0.1:0' }, kubernetes_api: { listen: { address: '127.0.0.1:0' } } },
    observability: { listen: { address: '127.0.0.1:0' }, logging: { level: 'info' } },
    ...extra,
  };
}

let files = 0;
function writeConfig(content: string | Record<string, unknown>): string {
  const path = join(dir, `kas-${++files}.yaml`);
  writeFileSync(path, typeof content === 'string' ? content : stringify(content));
  return path;
}

test('--help prints the usage and the exit codes, exits 0', async () => {
  const t = io();
  expect(await runKas(['--help'], t.io)).toBe(EXIT_OK);
  expect(t.out).toContain('kas --config <file.yaml>');
  expect(t.out).toContain('--dev-dir <dir>');
  expect(t.out).toContain('Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad flags or configuration.');
  expect(t.err).toBe('');
});

test('--version prints the version and commit, exits 0', async () => {
  const t = io();
  expect(await runKas(['--version'], t.io)).toBe(EXIT_OK);
  expect(t.out).toBe(`${BUILD_INFO.version} (${BUILD_INFO.commit})\n`);
  expect(t.err).toBe('');
});

test.each([
  [['--nope'], "Unknown option '--nope'"],
  [['--config'], "Option '--config <value>' argument missing"],
  [['kas.yaml'], "Unexpected argument 'kas.yaml'"],
])('bad flags %j exit 2 with the parser\'s message and the usage', async (argv, message) => {
  const t = io();
  expect(await runKas(argv, t.io)).toBe(EXIT_BAD_CONFIGURATION);
  expect(t.err).toMatch(/^kas: /);
  expect(t.err).toContain(message);
  expect(t.err).toContain('kas --config <file.yaml>');
  expect(t.out).toBe('');
});

test('a configuration file that does not exist: exit 2 naming the file', async () => {
  const t = io();
  const missing = join(dir, 'missing.yaml');
  expect(await runKas(['--config', missing], t.io)).toBe(EXIT_BAD_CONFIGURATION);
  expect(t.err).toMatch(new RegExp(`^kas: cannot read configuration file ${missing}: `));
});

test('a configuration file that is not YAML: exit 2 saying so', async () => {
  const t = io();
  const path = writeConfig('agent: [unclosed\n');
  expect(await runKas(['--config', path], t.io)).toBe(EXIT_BAD_CONFIGURATION);
  expect(t.err).toMatch(new RegExp(`^kas: configuration file ${path} is not valid YAML: `));
});

test('an unknown key: exit 2, and the message names the key', async () => {
  const t = io();
  const path = writeConfig(standaloneConfig({ agent: { listen: { address: '127.0.0.1:0', adress: 'x' } } }));
  expect(await runKas(['--config', path], t.io)).toBe(EXIT_BAD_CONFIGURATION);
  expect(t.err).toContain('kas: invalid configuration:\n');
  expect(t.err).toContain('agent.listen.adress: unknown key');
});

test('a TLS certificate file that does not exist: exit 2 before anything listens, the message names the key', async () => {
  const t = io();
  const path = writeConfig(
    standaloneConfig({
      agent: {
        listen: { address: '127.0.0.1:0', certificate_file: '/nonexistent/cert.pem', key_file: '/nonexistent/key.pem' },
        kubernetes_api: { listen: { address: '127.0.0.1:0' } },
      },
    }),
  );
  expect(await runKas(['--config', path], t.io)).toBe(EXIT_BAD_CONFIGURATION);
  expect(t.err).toMatch(/^kas: .*agent\.listen\.certificate_file/);
  expect(t.logs.filter((e) => e.msg === 'listening')).toEqual([]);
});

test('a secret file that does not exist: exit 2, the message names the key', async () => {
  const t = io();
  const path = writeConfig(standaloneConfig({ api: { listen: { address: '127.0.0.1:0', authentication_secret_file: '/nonexistent/api.secret' } } }));
  expect(await runKas(['--config', path], t.io)).toBe(EXIT_BAD_CONFIGURATION);
  expect(t.err).toMatch(/^kas: api\.listen\.authentication_secret_file: cannot read \/nonexistent\/api\.secret: /);
  expect(t.logs.filter((e) => e.msg === 'listening')).toEqual([]);
});

test('a listener that cannot start (its port is taken): exit 1, logged as fatal', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = taken.address() as AddressInfo;
    const t = io();
    const path = writeConfig(standaloneConfig({ observability: { listen: { address: `127.0.0.1:${port}` } } }));
    expect(await runKas(['--config', path], t.io)).toBe(EXIT_FAILURE);
    expect(t.logs.some((e) => e.msg === 'kas failed to start' && e.level === 60)).toBe(true);
    expect(t.err).toBe('');
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
});

function httpStatus(address: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(`http://${address}${path}`, { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

test('a whole run: a standalone configuration starts; a shutdown signal drains and exits 0', async () => {
  let shutdown: (signal: string) => void = () => {};
  let started: KasApp | null = null;
  let unregistered = false;
  const t = io({
    onShutdownSignal: (handler) => {
      shutdown = handler;
      return () => (unregistered = true);
    },
    onStarted: (app) => (started = app),
  });
  const path = writeConfig(standaloneConfig());
  const exit = runKas(['--config', path], t.io);
  await waitFor(() => started !== null, 'kas to start', 10_000, { describe: () => `stderr:\n${t.err}` });
  const app = started as KasApp | null;
  if (!app) throw new Error(`kas did not start within 10 s; stderr:\n${t.err}`);
  expect(Object.keys(app.addresses).sort()).toEqual(['agent', 'kubernetes_api', 'observability']);
  expect(await httpStatus(app.addresses.observability!, '/readiness')).toBe(200);
  shutdown('SIGTERM');
  expect(await exit).toBe(EXIT_OK);
  expect(unregistered).toBe(true);
  await expect(httpStatus(app.addresses.observability!, '/readiness')).rejects.toThrow();
  const messages = t.logs.map((e) => e.msg);
  expect(messages).toContain('listening');
  expect(t.logs.some((e) => e.msg === 'signal received: draining' && e.signal === 'SIGTERM')).toBe(true);
  expect(t.err).toBe('');
}, 15_000);

test('with shutdown_delay, a SIGTERM turns kas not ready at once while it keeps serving; a second signal during the delay exits at once', async () => {
  let shutdown: (signal: string) => void = () => {};
  let started: KasApp | null = null;
  const t = io({
    onShutdownSignal: (handler) => {
      shutdown = handler;
      return () => {};
    },
    onStarted: (app) => (started = app),
  });
  // A delay far longer than the test: only the second signal can end the run in time.
  const path = writeConfig(standaloneConfig({ shutdown_delay: '10m' }));
  const exit = runKas(['--config', path], t.io);
  await waitFor(() => started !== null, 'kas to start', 10_000, { describe: () => `stderr:\n${t.err}` });
  const app = started as KasApp | null;
  if (!app) throw new Error(`kas did not start within 10 s; stderr:\n${t.err}`);
  try {
    shutdown('SIGTERM');
    expect(await httpStatus(app.addresses.observability!, '/readiness')).toBe(503);
    expect(await httpStatus(app.addresses.observability!, '/liveness')).toBe(200);
    // The proxy listener still accepts and answers (401: no credentials), during the delay.
    expect(await httpStatus(app.addresses.kubernetes_api!, '/api/v1/namespaces')).toBe(401);
    shutdown('SIGINT');
    expect(await exit).toBe(EXIT_FAILURE);
    expect(t.logs.some((e) => e.msg === 'second signal: exiting now' && e.signal === 'SIGINT')).toBe(true);
  } finally {
    await app.stop();
  }
}, 15_000);
