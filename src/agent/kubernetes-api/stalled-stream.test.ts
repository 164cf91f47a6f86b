/**
 * A stream whose reader stopped reading (kas's client paused, so kas returns no credit) holds a
 * bounded number of the API server's bytes in agentk: at most one window plus one frame, whatever
 * the API server still has to send. Measured from agentk's buffered byte counts
 * (`agentk_kubernetes_api_buffered_bytes`: the response's readable buffer, the tunnel stream's
 * write buffer and the session's queue), not from timing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { getDefaultHighWaterMark } from 'node:stream';
import { join } from 'node:path';
import { DEFAULT_LIMITS, DEFAULT_TUNING } from '../../protocol/limits.js';
import type { TunnelStream } from '../../protocol/stream.js';
import type { Agentk } from '../app.js';
import { loadApiServerConfig } from './api-server.js';
import { httpGet, startTestAgent } from '../testing/agent-fixture.js';
import { FakeKas } from '../testing/fake-kas.js';
import { startFakeKubeApi, type FakeKubeApi } from '../../../test/support/fake-kube-api.js';
import { waitFor } from '../../../test/support/wait.js';

const KAS_TOKEN = 'kas-agent-token-stall';
const PIECE = Buffer.alloc(16 * 1024, 0x61);

let dir: string;
let kas: FakeKas;
let api: FakeKubeApi;
let agent: Agentk;
/** Response bytes the API server's socket accepted, per open /flood response. */
const flooding = new Set<{ res: ServerResponse; written: number; waiting: boolean }>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentk-stall-'));
  kas = await FakeKas.start({ token: KAS_TOKEN });
  api = await startFakeKubeApi({
    tls: false,
    record: false,
    handler: (req, res) => {
      if (req.url === '/version') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ gitVersion: 'v1.30.0' }));
        return;
      }
      // Writes for ever, as fast as the socket takes it.
      const f = { res, written: 0, waiting: false };
      flooding.add(f);
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      const pump = () => {
        f.waiting = false;
        while (!res.destroyed) {
          f.written += PIECE.byteLength;
          if (!res.write(PIECE)) {
            f.waiting = true;
            res.once('drain', pump);
            return;
          }
        }
      };
      res.on('close', () => flooding.delete(f));
      pump();
    },
  });
  ({ agent } = await startTestAgent({
    kasAddress: kas.url,
    token: KAS_TOKEN,
    apiServer: loadApiServerConfig({ kubeconfig: api.writeKubeconfig(dir), context: 'fake' }),
  }));
  await kas.session();
});

afterAll(async () => {
  await agent?.stop();
  await kas?.close();
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function bufferedInAgentk(): Promise<number> {
  const { body } = await httpGet(agent.observabilityAddress!, '/metrics');
  const m = /^agentk_kubernetes_api_buffered_bytes (\d+)/m.exec(body);
  if (!m) throw new Error(`agentk_kubernetes_api_buffered_bytes missing from /metrics:\n${body}`);
  return Number(m[1]);
}

test('a stream kas stopped reading holds at most one window and one frame of the response in agentk', async () => {
  const session = await kas.session();
  const streams: TunnelStream[] = [];
  const N = 4;
  for (let i = 0; i < N; i++) streams.push(kas.open(session, { method: 'GET', path: '/flood', headers: [], impersonate: null }, { end: true }));
  // kas reads nothing: each stream's window fills, agentk stops reading the API server, and the
  // API server's socket stops taking bytes (its write waits for 'drain').
  await waitFor(() => flooding.size === N && [...flooding].every((f) => f.waiting), 'the API server to be blocked on every response');
  // Stable: the counts no longer move (every buffer on the way is full).
  let last = -1;
  await waitFor(
    async () => {
      const now = await bufferedInAgentk();
      const same = now === last;
      last = now;
      return same && [...flooding].every((f) => f.waiting);
    },
    'agentk buffers to stop changing',
    20_000,
    { intervalMs: 300 },
  );
  const perStream = last / N;
  // The target: one window and one frame.
  expect(perStream).toBeGreaterThan(0);
  expect(perStream).toBeLessThanOrEqual(DEFAULT_LIMITS.initialWindow + DEFAULT_TUNING.chunkSize);
  // What agentk actually keeps (the window itself waits in kas, received and unread): the one
  // write the tunnel stream cannot complete (a chunk), one socket read in node:http's socket
  // buffer (64 KiB) and one in the response's buffer on top of its high-water mark.
  const read = 64 * 1024;
  expect(perStream).toBeLessThanOrEqual(DEFAULT_TUNING.chunkSize + 2 * read + getDefaultHighWaterMark(false));
  for (const s of streams) s.destroy();
  await waitFor(async () => (await bufferedInAgentk()) === 0, 'agentk to drop what it held once the streams are gone');
});
