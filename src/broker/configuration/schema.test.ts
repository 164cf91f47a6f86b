import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ConfigError, exampleConfig, validateConfig } from './schema.js';

function errorOf(raw: unknown): string {
  try {
    validateConfig(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the configuration to be refused');
}

describe('kas configuration', () => {
  test('an empty file gives the documented defaults', () => {
    const c = validateConfig({});
    expect(c.agent.listen.address).toBe('127.0.0.1:8150');
    expect(c.agent.listen.max_connection_age).toBe(2 * 3600 * 1000);
    expect(c.agent.kubernetes_api.listen.address).toBe('0.0.0.0:8154');
    expect(c.agent.kubernetes_api.url_path_prefix).toBe('/');
    expect(c.agent.kubernetes_api.agent_wait_timeout).toBe(20_000);
    expect(c.observability.listen.address).toBe('127.0.0.1:8151');
    expect(c.agent.tunnel.initial_window).toBe(256 * 1024);
    expect(c.agent.tunnel.ping_interval).toBe(20_000);
  });

  test('kas.example.yaml is exactly the defaults', () => {
    const example = parse(readFileSync(new URL('../../../kas.example.yaml', import.meta.url), 'utf8'));
    expect(validateConfig(example)).toEqual(validateConfig({}));
  });

  test('kas.example.yaml is what the modules\' parts compose (run `npm run example-config` after changing one)', () => {
    expect(readFileSync(new URL('../../../kas.example.yaml', import.meta.url), 'utf8')).toBe(exampleConfig());
  });

  test('the example writes out every key that has a default', () => {
    const keysOf = (v: unknown, prefix = ''): string[] =>
      v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.entries(v).flatMap(([k, x]) => (x === undefined ? [] : keysOf(x, `${prefix}${k}.`))) : [prefix.slice(0, -1)];
    const written = new Set(keysOf(parse(exampleConfig())));
    expect(keysOf(validateConfig({})).filter((k) => !written.has(k))).toEqual([]);
  });

  test('an unknown key is refused with its full path', () => {
    expect(errorOf({ agent: { listen: { adress: 'x:1' } } })).toContain('agent.listen.adress: unknown key');
  });

  test('a bad duration names the key and what was expected', () => {
    const msg = errorOf({ agent: { kubernetes_api: { agent_wait_timeout: '20 seconds' } } });
    expect(msg).toContain('agent.kubernetes_api.agent_wait_timeout');
    expect(msg).toContain('duration');
  });

  test('a bad listen address names the key', () => {
    expect(errorOf({ observability: { listen: { address: 'localhost' } } })).toContain('observability.listen.address');
  });

  test('a certificate without its key is refused', () => {
    expect(errorOf({ agent: { listen: { certificate_file: '/c.pem' } } })).toContain('agent.listen.key_file');
  });

  test('a proxy token for an agent that is not configured is refused', () => {
    const msg = errorOf({ standalone: { agents: [{ id: 1, name: 'a', token_file: '/t' }], proxy_tokens: [{ token_file: '/p', agents: [2] }] } });
    expect(msg).toContain('standalone.proxy_tokens.0.agents.0');
  });

  test('agent names must be DNS labels and ids unique', () => {
    expect(errorOf({ standalone: { agents: [{ id: 1, name: 'Bad_Name', token_file: '/t' }] } })).toContain('standalone.agents.0.name');
    expect(errorOf({ standalone: { agents: [{ id: 1, name: 'a', token_file: '/t' }, { id: 1, name: 'b', token_file: '/u' }] } })).toContain('standalone.agents.1.id');
  });

  test('access_as accepts agent or impersonate, nothing else', () => {
    const base = { agents: [{ id: 1, name: 'a', token_file: '/t' }] };
    const ok = validateConfig({ standalone: { ...base, proxy_tokens: [{ token_file: '/p', agents: [1], access_as: { impersonate: { username: 'u', groups: ['g'] } } }] } });
    expect(ok.standalone.proxy_tokens[0]!.access_as).toEqual({ impersonate: { username: 'u', groups: ['g'] } });
    expect(errorOf({ standalone: { ...base, proxy_tokens: [{ token_file: '/p', agents: [1], access_as: { root: {} } }] } })).toContain('standalone.proxy_tokens.0.access_as');
  });

  test('tunnel limits that contradict each other are refused', () => {
    expect(errorOf({ agent: { tunnel: { max_frame_size: 8192, chunk_size: 65536 } } })).toContain('agent.tunnel.chunk_size');
    expect(errorOf({ agent: { tunnel: { max_frame_size: 1e12 } } })).toContain('agent.tunnel.max_frame_size');
  });
});
