/**
 * The agent listener's log line for a session that closes with an error: one `msg` (pino writes a
 * `msg` field given in the object as a second key, which most log pipelines collapse, losing one of
 * them) and the cause under `err`, where pino's error serializer puts its message and code.
 */
import { once } from 'node:events';
import { WebSocket } from 'ws';
import { startStack, type Stack } from '../../../test/support/stack.js';
import { waitFor } from '../../../test/support/wait.js';

let stack: Stack;
beforeAll(async () => {
  // The upstream is never reached: no agentk runs, the test speaks to kas's agent listener itself.
  stack = await startStack({ upstream: { url: 'http://127.0.0.1:9/', caPem: '', token: 'unused' }, startAgent: false });
});
afterAll(() => stack.close());

test('a session closed with an error is logged with one msg and its cause under err', async () => {
  const ws = new WebSocket(`wss://${stack.kas.addresses.agent}/`, { headers: { Authorization: `Bearer ${stack.agentToken}` }, ca: stack.proxyCa, perMessageDeflate: false });
  ws.on('error', () => undefined);
  await once(ws, 'open');
  // Not a msgpack frame: kas closes the session with a coded protocol error.
  ws.send(Buffer.from([0xc1, 0xc1, 0xc1, 0xc1]));
  await once(ws, 'close');
  const isLine = (l: string) => l.includes('agent session closed with an error');
  await waitFor(() => stack.kasLogs.lines.some(isLine), 'kas to log the session closed with an error');
  const line = stack.kasLogs.lines.find(isLine)!;
  expect(line.match(/"msg":/g)).toHaveLength(1);
  const entry = JSON.parse(line) as { msg?: unknown; code?: unknown; err?: { message?: unknown; code?: unknown } };
  expect(entry.msg).toBe('agent session closed with an error');
  expect(typeof entry.code).toBe('string');
  expect(typeof entry.err?.message).toBe('string');
  expect(entry.err?.message).not.toBe('');
  expect(entry.err?.code).toBe(entry.code);
});
