/** The tunnel protocol: sessions of multiplexed, flow-controlled streams over a message transport. */
export * from './errors.js';
export * from './frames.js';
export * from './limits.js';
export * from './flow.js';
export * from './transport.js';
export * from './stream.js';
export * from './session.js';
export { createMemoryTransportPair } from './memory-transport.js';
export * from './http.js';
export * from './agent-config.js';
export * from './route.js';
