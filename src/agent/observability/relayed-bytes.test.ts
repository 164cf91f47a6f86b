import { AgentMetrics } from './metrics.js';

const value = async (m: AgentMetrics, direction: string): Promise<number | undefined> => {
  const text = await m.registry.getSingleMetricAsString('agentk_kubernetes_api_bytes_total');
  const line = text.split('\n').find((l) => l.startsWith(`agentk_kubernetes_api_bytes_total{direction="${direction}"}`));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
};

test('relayed bytes are summed between scrapes and each byte is counted once', async () => {
  const m = new AgentMetrics({ defaultMetrics: false });
  m.relayed('response', 100);
  m.relayed('response', 28);
  m.relayed('request', 7);
  expect(await value(m, 'response')).toBe(128);
  expect(await value(m, 'request')).toBe(7);
  // A scrape with nothing new changes nothing; later bytes add to what was reported.
  expect(await value(m, 'response')).toBe(128);
  m.relayed('response', 5);
  expect(await value(m, 'response')).toBe(133);
  expect(await value(m, 'request')).toBe(7);
});
