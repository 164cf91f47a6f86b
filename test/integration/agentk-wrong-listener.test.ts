/**
 * agentk pointed at a listener of a real kas other than the agent listener (the mistakes of a first
 * run): the Kubernetes API proxy with wss:// (it refuses the agent token with a JSON Status) or
 * ws:// (TLS: the connection is closed unanswered), the observability listener (404). Each time
 * agentk says the address is not a kas agent endpoint, instead of blaming the token or printing
 * "socket hang up".
 */
import { startStack, type Stack } from '../support/stack.js';
import { waitFor } from '../support/wait.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ upstream: { url: 'http://127.0.0.1:9/', caPem: '', token: 'unused' }, startAgent: false });
});
afterAll(() => stack.close());
afterEach(async () => {
  await stack.agent?.stop();
  stack.agent = null;
});

test.each([
  ['the Kubernetes API proxy over wss://', () => `wss://${stack.kas.addresses.kubernetes_api}/`, /answered the WebSocket upgrade with HTTP 401 with a JSON body/],
  ['the Kubernetes API proxy over ws://', () => `ws://${stack.kas.addresses.kubernetes_api}/`, /is an HTTPS port that answered plain HTTP with 400 \(use wss:\/\//],
  ['the observability listener', () => `ws://${stack.kas.addresses.observability}/`, /answered the WebSocket upgrade with HTTP 404 instead of switching protocols/],
])('agentk dialing %s says it is not a kas agent endpoint', async (_name, address, what) => {
  const kasAddress = address();
  const entry = () => stack.agentLogs.entries.find((e) => e.kasAddress === kasAddress && typeof e.msg === 'string' && e.msg.startsWith(`${kasAddress} is not a kas agent endpoint`));
  await stack.startAgent({ kasAddress, kasConnections: 1 });
  await waitFor(() => entry() !== undefined, `agentk to say that ${kasAddress} is not a kas agent endpoint`);
  expect(entry()!.msg).toMatch(what);
  expect(stack.agentLogs.entries.some((e) => e.kasAddress === kasAddress && String(e.msg).includes('kas refused the agent token'))).toBe(false);
});
