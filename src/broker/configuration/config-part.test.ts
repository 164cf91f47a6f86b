import { z } from 'zod';
import { composeSchema, configPart, renderExample } from './config-part.js';

describe('configuration composed of module parts', () => {
  const listen = configPart('agent.listen', { address: z.string().default('127.0.0.1:1') }, 'address: 127.0.0.1:1');
  const ttl = configPart('agent', { ttl: z.number().default(5) }, 'ttl: 5');
  const top = configPart('', { gitlab: z.strictObject({ address: z.string() }).optional() }, '# gitlab:\n#   address: https://gitlab.example.com');

  test('parts at the same path share one strict object, and an empty file gives every default', () => {
    const schema = composeSchema([listen, ttl, top]);
    expect(schema.parse({})).toEqual({ agent: { listen: { address: '127.0.0.1:1' }, ttl: 5 } });
    expect(schema.safeParse({ agent: { listen: { adress: 'x' } } }).success).toBe(false);
    expect(schema.parse({ gitlab: { address: 'g' }, agent: { ttl: 7 } })).toEqual({ gitlab: { address: 'g' }, agent: { listen: { address: '127.0.0.1:1' }, ttl: 7 } });
  });

  test('two modules declaring the same key is a programming error that names the key', () => {
    expect(() => composeSchema([ttl, configPart('agent', { ttl: z.number() }, 'ttl: 1')])).toThrow('agent.ttl is declared twice');
    expect(() => composeSchema([listen, configPart('agent', { listen: z.string() }, 'listen: x')])).toThrow('agent.listen is both a key and an object of keys');
  });

  test('the example nests every part under its path, in the order of the parts', () => {
    expect(renderExample([top, ttl, listen], '# header')).toBe(['# header', '# gitlab:', '#   address: https://gitlab.example.com', 'agent:', '  ttl: 5', '  listen:', '    address: 127.0.0.1:1', ''].join('\n'));
  });
});
