/** Helpers of agentk's integration tests: an in-process agentk with captured logs, and plain GETs. */
import http from 'node:http';
import { createLogger } from '../../shared/logger.js';
import { startAgentk, type AgentOptions, type Agentk } from '../app.js';
import { LogCapture } from '../../../test/support/logs.js';

export async function startTestAgent(options: Partial<AgentOptions> & Pick<AgentOptions, 'kasAddress' | 'token' | 'apiServer'>): Promise<{ agent: Agentk; logs: LogCapture }> {
  const logs = new LogCapture();
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
