import { formatAddress, parseListenAddress } from './address.js';

describe('parseListenAddress', () => {
  test.each([
    [':8080', { host: undefined, port: 8080 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['0.0.0.0:8080', { host: '0.0.0.0', port: 8080 }],
    ['[::1]:9', { host: '::1', port: 9 }],
    ['localhost:65535', { host: 'localhost', port: 65535 }],
  ])('%s', (text, expected) => {
    expect(parseListenAddress(text)).toEqual(expected);
  });

  test.each([['8080'], [':'], ['host:'], [':65536'], ['::1:80'], ['a b:80'], ['[::1]'], ['host:80x']])('%s is not host:port', (text) => {
    expect(parseListenAddress(text)).toBeNull();
  });
});

test('formatAddress puts IPv6 hosts in brackets', () => {
  expect(formatAddress({ address: '127.0.0.1', family: 'IPv4', port: 80 })).toBe('127.0.0.1:80');
  expect(formatAddress({ address: '::', family: 'IPv6', port: 8080 })).toBe('[::]:8080');
});
