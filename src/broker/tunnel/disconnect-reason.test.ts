/** Why an agent's connection ended, from its session's close error and whether kas drained it. */
import { TunnelError } from '../../protocol/errors.js';
import { disconnectReason } from './agent-listener.js';

describe('disconnect reasons', () => {
  test.each([
    ['kas drained it (even if it then failed)', new TunnelError('CONNECTION_LOST', 'x'), true, 'drain'],
    ['a clean close kas did not ask for (the agent drained)', null, false, 'closed_by_agent'],
    ['a keepalive timeout here', new TunnelError('KEEPALIVE_TIMEOUT', 'x'), false, 'keepalive_timeout'],
    ['a keepalive timeout at the agent', new TunnelError('KEEPALIVE_TIMEOUT', 'x', { remote: true }), false, 'keepalive_timeout'],
    ['a revoked token', new TunnelError('AUTH_REVOKED', 'x'), false, 'token_revoked'],
    ['the agent closing its session', new TunnelError('SESSION_CLOSED', 'x', { remote: true }), false, 'closed_by_agent'],
    ['kas closing the session on stop', new TunnelError('SESSION_CLOSED', 'x'), false, 'drain'],
    ['the network', new TunnelError('CONNECTION_LOST', 'x', { remote: true }), false, 'connection_lost'],
    ['a protocol error', new TunnelError('PROTOCOL_ERROR', 'x'), false, 'error'],
  ])('%s', (_what, err, drained, reason) => {
    expect(disconnectReason(err, drained)).toBe(reason);
  });
});
