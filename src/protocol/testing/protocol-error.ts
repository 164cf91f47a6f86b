/** For the wire-format tests: runs `fn`, expects it to throw TunnelError PROTOCOL_ERROR, returns the message. */
import { TunnelError } from '../errors.js';

export function protocolError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TunnelError);
    expect((err as TunnelError).code).toBe('PROTOCOL_ERROR');
    return (err as TunnelError).message;
  }
  throw new Error('expected a PROTOCOL_ERROR, but the input was accepted');
}
