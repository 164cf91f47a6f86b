import { Registry } from 'prom-client';
import { TalliedCounter } from './tallied-counter.js';

async function values(registry: Registry): Promise<Record<string, number>> {
  const text = await registry.metrics();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const [series, v] = line.split(' ');
    out[series!] = Number(v);
  }
  return out;
}

test('increments are summed per label set and each is counted once, whatever the scrapes', async () => {
  const registry = new Registry();
  const c = new TalliedCounter({ name: 'things_total', help: 'h', labelNames: ['a', 'b'], registers: [registry] });
  c.inc({ a: 'x', b: '1' });
  c.inc({ a: 'x', b: '1' }, 2);
  c.inc({ a: 'y', b: '1' }, 5);
  c.inc({ b: '1', a: 'x' });
  expect(await values(registry)).toEqual({ 'things_total{a="x",b="1"}': 4, 'things_total{a="y",b="1"}': 5 });
  expect(await values(registry)).toEqual({ 'things_total{a="x",b="1"}': 4, 'things_total{a="y",b="1"}': 5 });
  c.inc({ a: 'y', b: '1' });
  expect((await c.counter.get()).values.find((v) => v.labels.a === 'y')?.value).toBe(6);
});

test('a wrong label or a negative increment throws at the call, not at a scrape', async () => {
  const registry = new Registry();
  const c = new TalliedCounter<'a'>({ name: 'things_total', help: 'h', labelNames: ['a'], registers: [registry] });
  expect(() => c.inc({ b: 'x' } as never)).toThrow();
  c.inc({ a: 'x' });
  expect(() => c.inc({ a: 'x' }, -1)).toThrow();
  expect(await values(registry)).toEqual({ 'things_total{a="x"}': 1 });
});
