import { createMemoryTransportPair } from './memory-transport.js';
import { Session } from './session.js';
import { runSessionSuite, type PairOptions } from './testing/session-suite.js';

async function memoryPair(options: PairOptions = {}) {
  const [a, b] = createMemoryTransportPair();
  const server = new Session(b, { role: 'server', ...options.server });
  const client = new Session(a, { role: 'client', ...options.client });
  return {
    client,
    server,
    async cleanup() {
      client.close();
      server.close();
    },
  };
}

runSessionSuite('an in-memory transport pair', memoryPair);
