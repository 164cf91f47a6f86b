import { SectionFanOut } from './section-fan-out.js';

interface Doc {
  observability?: { level: string };
  gitops?: { projects: string[] };
}

describe('SectionFanOut', () => {
  test('a new subscriber gets the value in force of its section at once, for every key', () => {
    const fan = new SectionFanOut<Doc, number>();
    fan.publish(1, { observability: { level: 'debug' } });
    fan.publish(2, { gitops: { projects: ['a'] } });
    const seen: Array<[unknown, number]> = [];
    fan.subscribe('observability', (v, k) => seen.push([v, k]));
    expect(seen).toEqual([
      [{ level: 'debug' }, 1],
      [undefined, 2],
    ]);
  });

  test('only sections that changed are announced again', () => {
    const fan = new SectionFanOut<Doc>();
    const obs: unknown[] = [];
    const git: unknown[] = [];
    fan.subscribe('observability', (v) => obs.push(v));
    fan.subscribe('gitops', (v) => git.push(v));
    fan.publish(undefined, { observability: { level: 'info' }, gitops: { projects: ['a'] } });
    fan.publish(undefined, { observability: { level: 'debug' }, gitops: { projects: ['a'] } });
    expect(obs).toEqual([{ level: 'info' }, { level: 'debug' }]);
    expect(git).toEqual([{ projects: ['a'] }]);
  });

  test('removing a key tells its listeners undefined; unsubscribing stops the calls', () => {
    const fan = new SectionFanOut<Doc, number>();
    const seen: unknown[] = [];
    const off = fan.subscribe('gitops', (v, k) => seen.push([v, k]));
    fan.publish(7, { gitops: { projects: ['x'] } });
    fan.remove(7);
    off();
    fan.publish(7, { gitops: { projects: ['y'] } });
    expect(seen).toEqual([
      [{ projects: ['x'] }, 7],
      [undefined, 7],
    ]);
    expect(fan.current(7)).toEqual({ gitops: { projects: ['y'] } });
  });

  test('a listener that throws does not stop the others', () => {
    const errors: string[] = [];
    const fan = new SectionFanOut<Doc>((_err, section) => errors.push(section));
    const seen: unknown[] = [];
    fan.subscribe('gitops', () => {
      throw new Error('boom');
    });
    fan.subscribe('gitops', (v) => seen.push(v));
    fan.publish(undefined, { gitops: { projects: [] } });
    expect(seen).toEqual([{ projects: [] }]);
    expect(errors).toEqual(['gitops']);
  });
});
