/**
 * Hands out the sections of configuration documents to the features that use them, with
 * latest-value semantics: a new subscriber is told at once the value in force of its section (for
 * every key that has a document), and then every change of that section. A section whose value did
 * not change between two documents is not announced again. Keys tell documents apart (kas: one per
 * agent; agentk: its own, one key). Listeners run synchronously, in subscription order; one that
 * throws does not stop the others (the error goes to `onListenerError`).
 */
export type SectionListener<V, K> = (value: V | undefined, key: K) => void;

export class SectionFanOut<Doc extends object, K = void> {
  private readonly docs = new Map<K, Doc>();
  private readonly listeners = new Map<keyof Doc, Set<SectionListener<never, K>>>();

  constructor(private readonly onListenerError: (err: unknown, section: string) => void = () => undefined) {}

  /** The document in force for a key, if any. */
  current(key: K): Doc | undefined {
    return this.docs.get(key);
  }

  subscribe<S extends keyof Doc>(section: S, listener: SectionListener<Doc[S], K>): () => void {
    let set = this.listeners.get(section);
    if (!set) {
      set = new Set();
      this.listeners.set(section, set);
    }
    const entry = listener as SectionListener<never, K>;
    set.add(entry);
    for (const [key, doc] of this.docs) this.call(entry, section, doc[section], key);
    return () => {
      set.delete(entry);
    };
  }

  /** Puts a document in force for a key and tells the listeners of each section that changed. */
  publish(key: K, doc: Doc): void {
    const previous = this.docs.get(key);
    this.docs.set(key, doc);
    for (const [section, set] of this.listeners) {
      const value = doc[section];
      if (previous !== undefined && sameValue(previous[section], value)) continue;
      for (const l of set) this.call(l, section, value, key);
    }
  }

  /** Forgets a key's document (an agent left): its section listeners are told `undefined`. */
  remove(key: K): void {
    if (!this.docs.delete(key)) return;
    for (const [section, set] of this.listeners) for (const l of set) this.call(l, section, undefined, key);
  }

  private call(listener: SectionListener<never, K>, section: keyof Doc, value: unknown, key: K): void {
    try {
      (listener as SectionListener<unknown, K>)(value, key);
    } catch (err) {
      this.onListenerError(err, String(section));
    }
  }
}

function sameValue(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}
