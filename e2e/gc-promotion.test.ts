/**
 * kas and agentk, as real processes from dist/ with their Node options, serving a steady stream of
 * small proxied requests, move next to nothing of a finished request into V8's old generation.
 * Read from `--trace-gc-nvp` (bytes each scavenge promoted), so it counts bytes, not time.
 *
 * Regressions: an object of the old generation that is dead but not yet collected still keeps what
 * it points to through every young-generation collection (a scavenge cannot tell it is dead). The
 * stream table and the requests in flight were a Map and Sets, whose replaced hash tables point to
 * their successors (src/protocol/id-map.ts), and kas gave the router an object literal with a
 * getter, whose accessor pair V8 allocates in the old generation. Each kept every request's objects
 * until a full collection: 1.7 KB (kas) and about 3 KB (agentk) promoted per request, and
 * scavenges of 4-9 ms instead of about 1. Separate processes, so the test's own heap counts for
 * nothing.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE_FLAGS } from '../src/shared/node-flags.js';
import { startFakeKubeApi, type FakeKubeApi } from '../test/support/fake-kube-api.js';
import { listenerAddress, startProcess, type ManagedProcess } from './support/processes.js';
import { waitFor } from '../test/support/wait.js';

const PROXY_TOKEN = 'proxy-token-for-the-gc-test';
const AGENT_TOKEN = 'glagent-gc-test-agent-token-0123456789';
const BODY = JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Success', code: 200, message: 'a small answer' });

/** Bytes promoted by each scavenge so far, in order, from a process's `--trace-gc-nvp` output (of process `pid` only, when given). */
function scavengePromotions(output: string, pid?: number): number[] {
  const out: number[] = [];
  for (const line of output.split('\n')) {
    if (!line.includes(' gc=s ')) continue;
    if (pid !== undefined && !line.startsWith(`[${pid}:`)) continue;
    out.push(Number(/\bpromoted=(\d+)/.exec(line)?.[1] ?? Number.NaN));
  }
  return out;
}

/** The time (ms since the process started) of each collection in `--trace-gc-nvp` output, with whether it was a full one. */
function collections(output: string): { ms: number; full: boolean }[] {
  const out: { ms: number; full: boolean }[] = [];
  for (const line of output.split('\n')) {
    const m = /^\[\d+:0x[0-9a-f]+\]\s+(\d+) ms: pause=.* gc=(\w+) /.exec(line);
    if (m) out.push({ ms: Number(m[1]), full: m[2] === 'mc' || m[2] === 'ms' });
  }
  return out;
}

/** Answers with `total` bytes in 64 KiB writes, waiting for the socket to drain (as an API server streams a large list or log). */
function streamBytes(res: http.ServerResponse, total: number): void {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(total) });
  let left = total;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

describe('old-generation promotion under small proxied requests, and full collections under bulk', () => {
  let dir: string;
  let upstream: FakeKubeApi;
  let kas: ManagedProcess | null = null;
  let agentk: ManagedProcess | null = null;
  const client = new http.Agent({ keepAlive: true, maxSockets: 16 });
  let host = '';
  let port = 0;
  /** One GET through kas and agentk; its status (0: failed), with the body's size. */
  const get = (path: string) =>
    new Promise<{ status: number; bytes: number }>((resolve) => {
      const req = http.get({ host, port, path, agent: client, headers: { authorization: `Bearer pat:1:${PROXY_TOKEN}` } }, (res) => {
        let bytes = 0;
        res.on('data', (d: Buffer) => (bytes += d.length));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
        res.on('error', () => resolve({ status: 0, bytes }));
      });
      req.on('error', () => resolve({ status: 0, bytes: 0 }));
    });
  const one = async () => (await get('/api/v1/namespaces/default/configmaps/x')).status;

  afterAll(async () => {
    client.destroy();
    await agentk?.stop();
    await kas?.stop();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kas-gc-'));
    const file = (name: string, content: string) => {
      const p = join(dir, name);
      writeFileSync(p, content);
      return p;
    };
    upstream = await startFakeKubeApi({
      tls: false,
      record: false,
      handler: (req, res) => {
        const bulk = /^\/bulk\?bytes=(\d+)$/.exec(req.url ?? '');
        if (bulk) return streamBytes(res, Number(bulk[1]));
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(BODY);
      },
    });
    const config = {
      agent: { listen: { address: '127.0.0.1:0' }, kubernetes_api: { listen: { address: '127.0.0.1:0' } } },
      observability: { listen: { address: '127.0.0.1:0' } },
      api: { listen: { address: '127.0.0.1:0' } },
      private_api: { listen: { address: '127.0.0.1:0' } },
      standalone: {
        agents: [{ id: 1, name: 'gc-test', token_file: file('agent.token', `${AGENT_TOKEN}\n`) }],
        proxy_tokens: [{ token_file: file('proxy.token', `${PROXY_TOKEN}\n`), agents: [1] }],
      },
    };
    const nodeArgs = [...NODE_FLAGS, '--trace-gc-nvp'];
    kas = startProcess('kas', process.execPath, [...nodeArgs, 'dist/src/broker/main.js', '--config', file('kas.json', JSON.stringify(config))]);
    const [agentAddress, proxyAddress] = await Promise.all([kas.waitForLine(listenerAddress('agent'), 'kas to listen (agent)'), kas.waitForLine(listenerAddress('kubernetes_api'), 'kas to listen (kubernetes_api)')]);
    const kubeconfig = upstream.writeKubeconfig(dir);
    agentk = startProcess('agentk', process.execPath, [...nodeArgs, 'dist/src/agent/main.js', '--kas-address', `ws://${agentAddress}/`, '--token-file', join(dir, 'agent.token'), '--kubeconfig', kubeconfig, '--context', 'fake', '--observability-listen-address', '127.0.0.1:0']);
    [host, port] = [proxyAddress.slice(0, proxyAddress.lastIndexOf(':')), Number(proxyAddress.slice(proxyAddress.lastIndexOf(':') + 1))];
    await waitFor(async () => (await one()) === 200, 'a request through kas and agentk to succeed', 30_000, { intervalMs: 100, describe: () => `${kas!.describe(3000)}\n${agentk!.describe(3000)}` });
  }, 60_000);

  test('kas and agentk each promote under 300 bytes per request', async () => {
    const run = async (n: number) => {
      let left = n;
      let failed = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (left-- > 0) if ((await one()) !== 200) failed++;
        }),
      );
      expect(failed).toBe(0);
    };
    await run(2000);
    const before = { kas: scavengePromotions(kas!.output).length, agentk: scavengePromotions(agentk!.output).length };
    const requests = 12_000;
    await run(requests);
    const measured = (['kas', 'agentk'] as const).map((name) => {
      const after = scavengePromotions((name === 'kas' ? kas : agentk)!.output).slice(before[name]);
      return { name, scavenges: after.length, promotedPerRequest: Math.round(after.reduce((a, b) => a + b, 0) / requests) };
    });
    // Young collections ran while measuring (a 16 MiB young generation, some 20 KB per request),
    // and each promoted next to nothing (now about 10 bytes per request in kas, 30 in agentk).
    expect(measured.filter((m) => m.scavenges < 3)).toEqual([]);
    expect(measured.filter((m) => !(m.promotedPerRequest < 300))).toEqual([]);
  }, 180_000);

  test('a 2 GiB download through kas and agentk starts at most two full collections in either', async () => {
    // Every 64 KiB socket read is a new ArrayBuffer, counted by V8 as external memory. Dead young
    // ones are freed only by a scavenge, which V8 starts for them once they reach 32 MiB, and what
    // external memory grew since the last full collection counts against the old generation's
    // limit. With a 16 MiB young generation that left too little room under a limit of 46-76 MiB:
    // in about half of the benchmark's runs agentk started a full collection every 70 ms for the
    // whole transfer (50-100 ms of CPU each, in a heap where nothing had died) and bulk ran at half
    // speed; kas did several per GiB. `--initial-old-space-size=128` (src/shared/node-flags.ts)
    // keeps the limit at 128 MiB or more.
    // By time, not by count: the captured output is a bounded tail.
    const last = (p: ManagedProcess) => collections(p.output).at(-1)?.ms ?? 0;
    const since = { kas: last(kas!), agentk: last(agentk!) };
    const total = 2 * 1024 * 1024 * 1024;
    // curl reads it, as in the benchmark: a reader in this process, beside the upstream, is the
    // bottleneck (and so is a Node reader in a process of its own, some of the time); kas then holds
    // a window of the stream for longer, and what it holds is promoted and collected by full
    // collections too.
    const got = await new Promise<string>((resolve, reject) =>
      execFile('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', '-H', `Authorization: Bearer pat:1:${PROXY_TOKEN}`, `http://${host}:${port}/bulk?bytes=${total}`], (err, stdout, stderr) => (err ? reject(new Error(`curl failed: ${err.message} ${stderr}`)) : resolve(stdout))),
    );
    expect(got).toBe(`200 ${total}`);
    const full = (p: ManagedProcess, after: number) => collections(p.output).filter((c) => c.full && c.ms > after).length;
    const during = { kas: full(kas!, since.kas), agentk: full(agentk!, since.agentk) };
    // Now 1 in kas (its external memory once grew 64 MiB past the last full collection), 0 in
    // agentk; with the 16 MiB young generation alone, kas did 4-10 here (agentk's dozens came in
    // the benchmark's runs).
    expect(during.kas).toBeLessThanOrEqual(2);
    expect(during.agentk).toBeLessThanOrEqual(2);
  }, 180_000);

  test('the session layer alone (bench/small-streams.js): the side that opens streams promotes under 300 bytes per stream', async () => {
    // The stream table's Map showed here first: the opening side promoted every stream's objects,
    // up to 1.6 KB per stream once every table was kept (about 1 KB over this run; now about 50 B,
    // start-up included). The answering side runs in a child process.
    const streams = 60_000;
    const output = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [...NODE_FLAGS, '--trace-gc-nvp', 'dist/bench/small-streams.js', '--rounds', '1', '--streams', String(streams)], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
        err ? reject(new Error(`small-streams failed: ${err.message}\n${stderr.slice(-2000)}`)) : resolve(stdout),
      ),
    );
    const opener = Number(/^\[(\d+):/m.exec(output)?.[1]);
    // Every scavenge of the run (start-up included) over every stream: a warm-up of 5,000, then the round.
    const measured = scavengePromotions(output, opener);
    expect(measured.length).toBeGreaterThan(2);
    const perStream = measured.reduce((a, b) => a + b, 0) / (streams + 5000);
    expect(Math.round(perStream)).toBeLessThan(300);
  }, 180_000);
});
