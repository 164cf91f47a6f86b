import { createHmac } from 'node:crypto';
import { newReceiverToken, signGenericHmac, verifyGenericHmac } from './signature.js';
import { receiverNameFor } from './receivers.js';

describe("Flux's generic-hmac signature", () => {
  test('is sha256=<hex HMAC-SHA256 of the body keyed by the token>', () => {
    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    expect(signGenericHmac('what do ya want for nothing?', 'Jefe')).toBe('sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
    const body = Buffer.from('{"project":"acme/app"}');
    expect(signGenericHmac(body, 't0k3n')).toBe(`sha256=${createHmac('sha256', 't0k3n').update(body).digest('hex')}`);
  });

  test('verification refuses another body, another token, other forms', () => {
    const sig = signGenericHmac('body', 'token');
    expect(verifyGenericHmac('body', 'token', sig)).toBe(true);
    expect(verifyGenericHmac('body!', 'token', sig)).toBe(false);
    expect(verifyGenericHmac('body', 'other', sig)).toBe(false);
    expect(verifyGenericHmac('body', 'token', sig.replace('sha256=', 'sha1='))).toBe(false);
    expect(verifyGenericHmac('body', 'token', undefined)).toBe(false);
  });

  test('tokens are random, 64 hex characters', () => {
    const a = newReceiverToken();
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(newReceiverToken()).not.toBe(a);
  });

  test('Receiver names are valid and bounded', () => {
    expect(receiverNameFor('flux-system')).toBe('gitlab-agent-flux-system');
    const long = receiverNameFor('x'.repeat(253));
    expect(long.length).toBeLessThanOrEqual(253);
    expect(long).toMatch(/^gitlab-agent-x+-[0-9a-f]{10}$/);
    expect(receiverNameFor('y'.repeat(253))).not.toBe(receiverNameFor(`${'y'.repeat(252)}z`));
  });
});
