/** A KasModule for a server that owns one listener: `start()` resolves with its bound `host:port`. */
import type { KasModule, ListenerName } from './module.js';

export interface ListeningServer {
  start(): Promise<string>;
  drain?(graceMs: number): Promise<void>;
  stop(): Promise<void>;
}

export function listenerModule(name: ListenerName, server: ListeningServer, extra: Partial<Pick<KasModule, 'readiness'>> = {}): KasModule {
  let address = '';
  return {
    listener: { name, address: () => address },
    async start() {
      address = await server.start();
    },
    drain: server.drain ? (graceMs) => server.drain!(graceMs) : undefined,
    stop: () => server.stop(),
    ...extra,
  };
}
