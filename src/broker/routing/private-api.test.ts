import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { WebSocket } from 'ws';
import { createLogger } from '../../shared/logger.js';
import { validateConfig } from '../configuration/schema.js';
import { signKasToKas } from '../gitlab/jwt.js';
import { AgentRegistry } from '../tunnel/agent-registry.js';
import { PrivateApi } from './private-api.js';

describe('the private API listener', () => {
  const secret = randomBytes(32);
  const tunnel = validateConfig({}).agent.tunnel;
  let api: PrivateApi;
  let url: string;

  beforeAll(async () => {
    api = new PrivateApi({ address: '127.0.0.1:0', secret, tunnel, registry: new AgentRegistry(), agentWaitMs: 100, logger: createLogger({ name: 'kas', level: 'silent' }) });
    url = `ws://${await api.start()}/`;
  });

  afterAll(async () => {
    await api.stop();
  });

  test('refuses a message far above the configured frame size at the WebSocket layer (it once took 100 MiB)', async () => {
    const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${await signKasToKas(secret, 30)}` }, perMessageDeflate: false });
    await once(ws, 'open');
    ws.send(Buffer.alloc(tunnel.max_frame_size + 1024 * 1024));
    const [code] = (await once(ws, 'close')) as [number];
    // 1009 is ws's "message too big": the message was cut off as it came, never buffered whole for
    // the session (which would have refused it only then, with 4004).
    expect(code).toBe(1009);
  });

  test('refuses an upgrade without a valid kas-to-kas token', async () => {
    const ws = new WebSocket(url, { headers: { Authorization: 'Bearer not-a-jwt' } });
    ws.on('error', () => undefined);
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number; resume(): void }];
    res.resume();
    ws.terminate();
    expect(res.statusCode).toBe(401);
  });
});
