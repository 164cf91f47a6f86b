/**
 * A real Redis server for tests: redis-server (Debian's package, installed by the test command's
 * provisioning) on a free loopback port, no persistence, stopped by pid (also when a test fails).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

export interface TestRedis {
  address: string;
  port: number;
  /** Stops the server (SIGKILL): Redis "goes away" for degraded-mode tests. */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  restart(): Promise<void>;
  close(): Promise<void>;
}


/** True once redis-server answers PING on `port`. */
function answersPing(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.write('PING\r\n');
    });
    s.once('data', (d: Buffer) => {
      s.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
    s.once('error', () => resolve(false));
  });
}

function waitReady(port: number): Promise<void> {
  return waitFor(() => answersPing(port), `redis-server to answer on port ${port}`, 10_000, { intervalMs: 50 });
}

/** Installs Debian's redis-server when it is missing (the full test command's provisioning also does). */
function ensureRedisServer(): void {
  if (spawnSync('redis-server', ['--version']).status === 0) return;
  process.stderr.write('redis-server is missing: installing Debian\'s redis-server\n');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const run = (args: string[]) => spawnSync(sudo[0] ?? args[0]!, sudo.length ? [...sudo.slice(1), ...args] : args.slice(1), { env, stdio: 'inherit' });
  run(['apt-get', 'update', '-qq']);
  run(['apt-get', 'install', '-y', '-qq', 'redis-server']);
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    throw new Error('redis-server is not installed and could not be installed: run `bash e2e/provision.sh` (or `apt-get install -y redis-server`) as root');
  }
}

export async function startRedis(): Promise<TestRedis> {
  ensureRedisServer();
  const port = await freePort();
  let child: ChildProcess | null = null;
  const launch = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], { stdio: 'ignore' });
    await waitReady(port);
  };
  const kill = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await launch();
  const stopOnExit = () => (child as ChildProcess | null)?.kill('SIGKILL');
  process.once('exit', stopOnExit);
  return {
    address: `127.0.0.1:${port}`,
    port,
    kill,
    restart: launch,
    async close() {
      process.off('exit', stopOnExit);
      await kill();
    },
  };
}
