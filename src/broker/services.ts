/**
 * What kas modules offer each other, by typed key: a module that offers something exports its key
 * from its own folder, provides the value while it is created, and later modules get it by the key.
 * The list of modules decides who comes first; asking for a key nobody provided is a programming
 * error that names both.
 */

/** A typed name of something a module offers. `T` is only a type; the name is for errors. */
export interface ServiceKey<T> {
  readonly name: string;
  /** Carries T for the type checker; never set. */
  readonly type?: T;
}

export function serviceKey<T>(name: string): ServiceKey<T> {
  return { name };
}

export class Services {
  private readonly values = new Map<ServiceKey<unknown>, unknown>();

  provide<T>(key: ServiceKey<T>, value: T): void {
    if (this.values.has(key)) throw new Error(`service ${key.name} is provided twice`);
    this.values.set(key, value);
  }

  /** The value of a key that an earlier module must have provided. */
  get<T>(key: ServiceKey<T>): T {
    if (!this.values.has(key)) throw new Error(`service ${key.name} is not provided: the module that offers it must come earlier in modules.ts`);
    return this.values.get(key) as T;
  }

  /** The value of a key, or null when no module offers it (the feature is off). */
  find<T>(key: ServiceKey<T>): T | null {
    return this.values.has(key) ? (this.values.get(key) as T) : null;
  }
}
