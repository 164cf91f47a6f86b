/**
 * Tables for things that come and go many times a second in a long-lived owner: the streams of a
 * session, the requests a server has in flight. They replace `Map` and `Set` there for the garbage
 * collector's sake, not for lookup speed.
 *
 * Why not `Map`/`Set`: V8 stores them as ordered hash tables. When one grows, shrinks or compacts
 * the entries that deletions left behind, the old table keeps a pointer to its successor (for live
 * iterators), along with the entries it held. A table that lived long enough to reach the old
 * generation and is then dropped still points at younger tables and entries, and a young-generation
 * collection (a scavenge) cannot tell that it is dead: every entry it reaches survives and is
 * promoted, and the next replacement table with it. Under steady churn (ids that only grow, one
 * insert and one delete per request) that chain never breaks until a full collection: measured on
 * kas's side of a session, about 2 MB promoted per scavenge, every stream's objects, and scavenges
 * of 4-9 ms instead of about 1 (bench/small-streams.ts under `--trace-gc-nvp`).
 *
 * `IdMap` is an open-addressing hash table (linear probing, deletion by backward shift, so no
 * tombstones) over plain arrays that nothing else points at; when it is resized the old arrays are
 * cleared, so a dead one holds nothing.
 */

/** Smallest capacity (slots); a power of two. */
const MIN_CAPACITY = 16;
/** Keys are positive 31-bit integers (stream ids are; `HandleSet` hands out such numbers). */
const MAX_KEY = 0x7fffffff;

/** The arrays of a map that never held anything (an idle session's stream table): nothing allocated. */
const NO_KEYS = new Int32Array(0);
const NO_VALUES: never[] = [];

/** A map from positive 31-bit integer keys to values. Iteration order is unspecified. */
export class IdMap<V> {
  /** 0 marks a free slot. Empty (NO_KEYS) until the first `set`. */
  private keys: Int32Array = NO_KEYS;
  private vals: Array<V | undefined> = NO_VALUES;
  private mask = 0;
  /** 32 - log2(capacity): a key's home slot is the top bits of its hash. */
  private shift = 32;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Slots allocated (0 until the first `set`): what the table costs, for tests and accounting. */
  get slots(): number {
    return this.keys.length;
  }

  get(key: number): V | undefined {
    const i = this.find(key);
    return i < 0 ? undefined : this.vals[i];
  }

  has(key: number): boolean {
    return this.find(key) >= 0;
  }

  /** Sets `key` (an integer from 1 to 2^31 - 1) to `value`. */
  set(key: number, value: V): this {
    if (!Number.isInteger(key) || key < 1 || key > MAX_KEY) throw new RangeError(`IdMap keys are integers from 1 to ${MAX_KEY}, not ${key}`);
    if (this.keys.length === 0) this.resize(MIN_CAPACITY);
    const keys = this.keys;
    const mask = this.mask;
    let i = slotOf(key, this.shift);
    for (; keys[i] !== 0; i = (i + 1) & mask) {
      if (keys[i] === key) {
        this.vals[i] = value;
        return this;
      }
    }
    keys[i] = key;
    this.vals[i] = value;
    this.count++;
    // At most half full: probes stay short.
    if (this.count * 2 > keys.length) this.resize(keys.length * 2);
    return this;
  }

  /** Removes `key`; false when it was not there. */
  delete(key: number): boolean {
    let hole = this.find(key);
    if (hole < 0) return false;
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    // Backward shift: later members of the probe run move into the hole when their home slot allows,
    // so lookups never meet a gap before their key.
    for (let j = (hole + 1) & mask; keys[j] !== 0; j = (j + 1) & mask) {
      const home = slotOf(keys[j]!, this.shift);
      // Move j to the hole unless its home lies cyclically in (hole, j].
      if (hole <= j ? home <= hole || home > j : home <= hole && home > j) {
        keys[hole] = keys[j]!;
        vals[hole] = vals[j];
        hole = j;
      }
    }
    keys[hole] = 0;
    vals[hole] = undefined;
    this.count--;
    // Shrinks after a burst, so an idle table holds little: when under 1/32 full, to a quarter (1/8
    // full at most, with room to double before it grows again). Streams in flight that swing
    // between a few and a few dozen (32 connections) stay in one table: shrinking at 1/8 to a half
    // resized it up and down every few requests.
    if (keys.length > MIN_CAPACITY && this.count * 32 < keys.length) this.resize(Math.max(MIN_CAPACITY, keys.length / 4));
    return true;
  }

  /** The values, in a new array (the map may change while the caller walks it). */
  values(): V[] {
    const out: V[] = [];
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== 0) out.push(this.vals[i]!);
    return out;
  }

  clear(): void {
    this.drop();
    this.keys = NO_KEYS;
    this.vals = NO_VALUES;
    this.mask = 0;
    this.shift = 32;
    this.count = 0;
  }

  /** The slot holding `key`, or -1. */
  private find(key: number): number {
    // 0 marks free slots; no other key outside 1..MAX_KEY can be stored.
    if (key === 0 || this.count === 0) return -1;
    const keys = this.keys;
    const mask = this.mask;
    for (let i = slotOf(key, this.shift); ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) return i;
      if (k === 0) return -1;
    }
  }

  private resize(capacity: number): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    const keys = new Int32Array(capacity);
    const vals = new Array<V | undefined>(capacity).fill(undefined);
    const mask = capacity - 1;
    const shift = 32 - Math.log2(capacity);
    for (let i = 0; i < oldKeys.length; i++) {
      const key = oldKeys[i]!;
      if (key === 0) continue;
      let j = slotOf(key, shift);
      while (keys[j] !== 0) j = (j + 1) & mask;
      keys[j] = key;
      vals[j] = oldVals[i];
    }
    this.drop();
    this.keys = keys;
    this.vals = vals;
    this.mask = mask;
    this.shift = shift;
  }

  /** Empties the current value array before it is let go (see the file comment). */
  private drop(): void {
    if (this.vals !== NO_VALUES) this.vals.fill(undefined);
  }
}

/** Fibonacci hashing: consecutive ids (and ids two apart) spread over the whole table. */
function slotOf(key: number, shift: number): number {
  return Math.imul(key, 0x9e3779b1) >>> shift;
}

/**
 * A set of things in flight (requests, exchanges): `add` returns a handle that `delete` takes.
 * Backed by an `IdMap` (see the file comment for why not a `Set`).
 */
export class HandleSet<V> {
  private readonly map = new IdMap<V>();
  private last = 0;

  get size(): number {
    return this.map.size;
  }

  /** Adds `value`; returns its handle. */
  add(value: V): number {
    // Handles wrap after 2^31 - 1 additions; one still in use is skipped.
    do this.last = this.last === MAX_KEY ? 1 : this.last + 1;
    while (this.map.has(this.last));
    this.map.set(this.last, value);
    return this.last;
  }

  delete(handle: number): boolean {
    return this.map.delete(handle);
  }

  /** The members, in a new array. */
  values(): V[] {
    return this.map.values();
  }
}
