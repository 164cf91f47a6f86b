/** Helpers of agentk's integration tests: an in-process agentk with captured logs, and plain GETs. */
import http from 'node:http';
import { Writable } from 'node:stream';
import { createLogger } from '../../shared/logger.js';
import { startAgentk, type AgentOptions, type Agentk } from '../app.js';

/** Collects pino's JSON lines. */
export class LogSink extends Writable {
  text = '';

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString('utf8');
    cb();
  }

  get entries(): Array<Record<string, unknown>> {
    return this.text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

export async function startTestAgent(options: Partial<AgentOptions> & Pick<AgentOptions, 'kasAddress' | 'token' | 'apiServer'>): Promise<{ agent: Agentk; logs: LogSink }> {
  const logs = new LogSink();
  const agent = await startAgentk({
    observabilityListenAddress: '127.0.0.1:0',
    backoff: { baseMs: 20, capMs: 200 },
    drainGraceMs: 1000,
    defaultMetrics: false,
    podName: 'agentk-test-pod',
    podNamespace: 'gitlab-agent',
    logger: createLogger({ name: 'agentk', level: 'debug', destination: logs }),
    ...options,
  });
  return { agent, logs };
}

export function httpGet(address: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(`http://${address}${path}`, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}
