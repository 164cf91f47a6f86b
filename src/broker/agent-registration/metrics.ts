/** Metrics of agent registration. */
import { Counter, type Registry } from 'prom-client';

export class RegistrationMetrics {
  /** agent_info streams by result: ok, invalid (reset with PROTOCOL_ERROR), timeout, lost (the stream closed first). */
  readonly registrations: Counter<'result'>;

  constructor(registry: Registry) {
    this.registrations = new Counter({
      name: 'kas_agent_registrations_total',
      help: 'Agent registrations (agent_info streams) by result: ok, invalid (refused with PROTOCOL_ERROR, nothing kept), timeout, lost (the stream closed first).',
      labelNames: ['result'],
      registers: [registry],
    });
  }
}
