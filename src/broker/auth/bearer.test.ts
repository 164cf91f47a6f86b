import { bearerToken, MAX_TOKEN_LENGTH } from './bearer.js';

describe('bearer tokens', () => {
  test('one well-formed header gives its token', () => {
    expect(bearerToken(['Authorization', 'Bearer abc.def'])).toEqual({ ok: true, token: 'abc.def' });
    expect(bearerToken(['authorization', 'bearer abc'])).toEqual({ ok: true, token: 'abc' });
  });
  test('missing, repeated, empty, malformed or huge tokens are refused', () => {
    expect(bearerToken([]).ok).toBe(false);
    expect(bearerToken(['Authorization', 'Bearer a', 'authorization', 'Bearer b'])).toEqual({ ok: false, message: 'more than one Authorization header' });
    expect(bearerToken(['Authorization', 'Bearer ']).ok).toBe(false);
    expect(bearerToken(['Authorization', 'Basic dXNlcjpwYXNz']).ok).toBe(false);
    expect(bearerToken(['Authorization', 'Bearer a b']).ok).toBe(false);
    expect(bearerToken(['Authorization', 'Bearer a\u0001b']).ok).toBe(false);
    expect(bearerToken(['Authorization', `Bearer ${'x'.repeat(MAX_TOKEN_LENGTH + 1)}`]).ok).toBe(false);
  });
});
