import { Cancellation } from './cancellation.js';

describe('Cancellation', () => {
  test('no AbortSignal is made until asked for; one asked for after cancel() is already aborted', () => {
    const c = new Cancellation();
    expect(c.aborted).toBe(false);
    c.cancel();
    expect(c.aborted).toBe(true);
    expect(c.signal.aborted).toBe(true);
  });

  test('a signal asked for before cancel() aborts with it; the hook runs once, and not after it was removed', () => {
    const c = new Cancellation();
    const signal = c.signal;
    let runs = 0;
    const remove = c.onCancel(() => runs++);
    c.cancel();
    c.cancel();
    expect(signal.aborted).toBe(true);
    expect(runs).toBe(1);
    const d = new Cancellation();
    let ran = false;
    d.onCancel(() => (ran = true))();
    d.cancel();
    expect(ran).toBe(false);
    remove();
  });
});
