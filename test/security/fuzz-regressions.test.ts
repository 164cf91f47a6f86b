/**
 * Inputs the fuzz suites found to be mishandled, kept as fixtures so they stay fixed. Each test is
 * named after the problem it pins.
 */
import { KasFuzzTarget } from './fuzz-targets.js';

describe('kas facing a hostile agent', () => {
  let kas: KasFuzzTarget;

  beforeAll(async () => {
    kas = await KasFuzzTarget.start();
  });

  afterAll(async () => {
    await kas?.close();
  });

  // Found by the kas-reply target: kas relayed an agent's 101 (and other 1xx) to a client that had
  // asked for no upgrade, so the client saw a protocol switch it never requested, or waited for a
  // final response that never came until the connection was cut.
  test.each([101, 100, 103, 199])('an agent answering a plain GET with status %i gets the client a 502 Status', async (status) => {
    const outcomes: Record<string, number> = {};
    const failure = await kas.replyCase({ head: { status, headers: [['Upgrade', 'websocket'], ['Connection', 'Upgrade']] }, data: null, fin: false, after: [] }, outcomes);
    expect(failure).toBeNull();
    expect(Object.keys(outcomes)).toEqual(['kas reply: status 502']);
  });

  test('a valid 200 reply from the agent still reaches the client', async () => {
    const outcomes: Record<string, number> = {};
    const failure = await kas.replyCase({ head: { status: 200, headers: [['Content-Length', '2']] }, data: Buffer.from('ok'), fin: true, after: [] }, outcomes);
    expect(failure).toBeNull();
    expect(Object.keys(outcomes)).toEqual(['kas reply: status 200']);
  });
});
