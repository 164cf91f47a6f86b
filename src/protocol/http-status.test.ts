import { TUNNEL_ERROR_CODES, type TunnelErrorCode } from './errors.js';
import { httpStatusOfTunnelCode, opensElsewhere, TUNNEL_CODE_HTTP_STATUS } from './http-status.js';

const codes = Object.keys(TUNNEL_ERROR_CODES) as TunnelErrorCode[];

test('every tunnel code has an HTTP error status for both stages', () => {
  const problems: string[] = [];
  for (const code of codes) {
    const row = TUNNEL_CODE_HTTP_STATUS[code] as (typeof TUNNEL_CODE_HTTP_STATUS)[TunnelErrorCode] | undefined;
    if (!row) {
      problems.push(`${code} has no row in TUNNEL_CODE_HTTP_STATUS`);
      continue;
    }
    for (const stage of ['open', 'reply'] as const) {
      const status = row[stage];
      if (!Number.isInteger(status) || status < 400 || status > 599) problems.push(`${code} at ${stage} maps to ${status}, not an HTTP error status`);
    }
  }
  expect(problems).toEqual([]);
});

test('the table names no code the tunnel no longer has', () => {
  expect(Object.keys(TUNNEL_CODE_HTTP_STATUS).filter((code) => !(code in TUNNEL_ERROR_CODES))).toEqual([]);
});

test('a full stream table is 429 when opening, a head over the agent\'s limit 431; any other failure to open is 503', () => {
  expect(httpStatusOfTunnelCode('STREAM_LIMIT', 'open')).toBe(429);
  expect(httpStatusOfTunnelCode('HEADER_TOO_LARGE', 'open')).toBe(431);
  for (const code of codes.filter((c) => c !== 'STREAM_LIMIT' && c !== 'HEADER_TOO_LARGE')) expect([code, httpStatusOfTunnelCode(code, 'open')]).toEqual([code, 503]);
});

test('only failures another session may not have are retried elsewhere (not a head too large, not a full table)', () => {
  expect(codes.filter(opensElsewhere).sort()).toEqual(['CONNECTION_LOST', 'GOING_AWAY', 'SESSION_CLOSED', 'STREAM_REFUSED']);
});

test('once the stream is open, every failure before the reply head is 502 (a full stream table at the agent too)', () => {
  for (const code of codes) expect([code, httpStatusOfTunnelCode(code, 'reply')]).toEqual([code, 502]);
});
