import { KasApp } from './app.js';
import { validateConfig } from './configuration/schema.js';
import { ConfigError } from './configuration/config-error.js';
import { defineModule, type KasModule } from './module.js';
import { serviceKey } from './services.js';
import { createLogger } from '../shared/logger.js';

const logger = createLogger({ name: 'kas', level: 'silent' });
const GREETING = serviceKey<string>('greeting');

function recording(name: string, events: string[], extra: Partial<KasModule> = {}) {
  return defineModule({
    name,
    owns: [],
    create: () => ({
      start: async () => void events.push(`start ${name}`),
      drain: async (g: number) => void events.push(`drain ${name} ${g}`),
      stop: async () => void events.push(`stop ${name}`),
      ...extra,
    }),
  });
}

describe('KasApp runs the modules of its list', () => {
  test('start in order, drain all, stop in reverse; a module that is off (null) is skipped', async () => {
    const events: string[] = [];
    const off = defineModule({ name: 'off', owns: [], create: () => null });
    const app = new KasApp({ config: validateConfig({}), logger, modules: [recording('a', events), off, recording('b', events)] });
    await app.start();
    await app.shutdown(7);
    expect(events).toEqual(['start a', 'start b', 'drain a 7', 'drain b 7', 'stop b', 'stop a']);
  });

  test('services: a later module gets what an earlier one provided; asking for a missing one names it', () => {
    let got = '';
    const giver = defineModule({ name: 'giver', owns: [], create: (ctx) => (ctx.services.provide(GREETING, 'hello'), null) });
    const taker = defineModule({ name: 'taker', owns: [], create: (ctx) => ((got = ctx.services.get(GREETING)), null) });
    const app = new KasApp({ config: validateConfig({}), logger, modules: [giver, taker] });
    expect(got).toBe('hello');
    expect(app.service(GREETING)).toBe('hello');
    expect(() => new KasApp({ config: validateConfig({}), logger, modules: [taker] })).toThrow('service greeting is not provided');
  });

  test('a configuration error while creating stops everything before anything starts', () => {
    const events: string[] = [];
    const bad = defineModule({
      name: 'bad',
      owns: [],
      create: () => {
        throw new ConfigError('agent.listen.certificate_file: cannot read /nope');
      },
    });
    expect(() => new KasApp({ config: validateConfig({}), logger, modules: [recording('a', events), bad] })).toThrow(ConfigError);
    expect(events).toEqual([]);
  });

  test('readiness: not ready while starting, then each started module may say why not, and shutting down says so', async () => {
    let problem: string | null = 'Redis is unreachable';
    const app = new KasApp({ config: validateConfig({}), logger, modules: [recording('a', [], { readiness: () => problem })] });
    expect(app.readinessProblems()).toEqual(['starting or shutting down']);
    await app.start();
    expect(app.readinessProblems()).toEqual(['Redis is unreachable']);
    problem = null;
    expect(app.readinessProblems()).toEqual([]);
    const shutdown = app.shutdown(0);
    expect(app.readinessProblems()).toContain('shutting down');
    await shutdown;
  });

  test('shutdown_delay: not ready at once, no module drains until the delay ends; stop() during the delay ends it', async () => {
    const events: string[] = [];
    const app = new KasApp({ config: validateConfig({ shutdown_delay: '10m' }), logger, modules: [recording('a', events)] });
    await app.start();
    let done = false;
    const shutdown = app.shutdown(5).then(() => (done = true));
    expect(app.readinessProblems()).toEqual(['shutting down']);
    await new Promise((r) => setTimeout(r, 50));
    expect(events).toEqual(['start a']);
    expect(done).toBe(false);
    // A delay of ten minutes: only stop() can end this within the test's time.
    await app.stop();
    await shutdown;
    expect(events).toEqual(['start a', 'stop a']);
  });

  test('the default list: every listener is started and its address recorded', async () => {
    const config = validateConfig({
      agent: { listen: { address: '127.0.0.1:0' }, kubernetes_api: { listen: { address: '127.0.0.1:0' } } },
      observability: { listen: { address: '127.0.0.1:0' } },
    });
    const app = new KasApp({ config, logger });
    await app.start();
    try {
      expect(Object.keys(app.addresses).sort()).toEqual(['agent', 'kubernetes_api', 'observability']);
      for (const address of Object.values(app.addresses)) expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    } finally {
      await app.stop();
    }
  });
});
