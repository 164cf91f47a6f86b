/**
 * Bounded waits keyed by an id (an agent id): callers wait for a value to be offered for their key,
 * up to a timeout or until their signal aborts. Used for "wait until this agent is connected here"
 * and "wait until some replica announces this agent".
 */
type Waiter<V> = (value: V) => boolean;

export class KeyedWaiters<K, V> {
  private readonly waiters = new Map<K, Set<Waiter<V>>>();

  /**
   * Resolves with the first value offered for `key` that `accept` takes, or null after `timeoutMs`
   * or when `signal` aborts.
   */
  wait(key: K, timeoutMs: number, signal?: AbortSignal, accept: (value: V) => boolean = () => true): Promise<V | null> {
    return new Promise((resolve) => {
      let set = this.waiters.get(key);
      if (!set) {
        set = new Set();
        this.waiters.set(key, set);
      }
      const waiters = set;
      const finish = (value: V | null) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        waiters.delete(waiter);
        if (waiters.size === 0 && this.waiters.get(key) === waiters) this.waiters.delete(key);
        resolve(value);
      };
      const waiter: Waiter<V> = (value) => {
        if (!accept(value)) return false;
        finish(value);
        return true;
      };
      const onAbort = () => finish(null);
      const timer = setTimeout(() => finish(null), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      waiters.add(waiter);
    });
  }

  /**
   * Offers values to the waiters of `key`, one `produce()` call per waiter (so each may get a
   * different value, e.g. the least loaded session at that moment); stops when it returns null.
   */
  offer(key: K, produce: () => V | null): void {
    const set = this.waiters.get(key);
    if (!set) return;
    for (const w of [...set]) {
      const value = produce();
      if (value === null) return;
      w(value);
    }
  }
}
