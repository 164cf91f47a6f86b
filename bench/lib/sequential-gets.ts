/** Latency of sequential small GETs over one keep-alive HTTPS connection: p50 and p99 in ms. */
import https from 'node:https';

export interface Percentiles {
  p50: number;
  p99: number;
}

function get(agent: https.Agent, url: URL, ca: string, auth: string): Promise<number> {
  const start = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = https.request(url, { agent, ca, headers: { authorization: auth } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - start) / 1e6) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** `count` GETs of `path` at `base` (after 50 for warm-up), one at a time on one connection. */
export async function sequentialGets(base: string, path: string, ca: string, auth: string, count: number): Promise<Percentiles> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const url = new URL(path, base);
  try {
    for (let i = 0; i < 50; i++) await get(agent, url, ca, auth);
    const times: number[] = [];
    for (let i = 0; i < count; i++) times.push(await get(agent, url, ca, auth));
    times.sort((a, b) => a - b);
    return { p50: times[Math.floor(times.length / 2)]!, p99: times[Math.min(times.length - 1, Math.floor(times.length * 0.99))]! };
  } finally {
    agent.destroy();
  }
}

export function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** Reads `--name <number>` from the command line. */
export function numberFlag(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
