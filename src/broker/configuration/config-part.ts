/**
 * The kas configuration is composed from the parts its modules declare. A part is a set of keys
 * (zod schemas with their defaults) at one place in the file: `configPart('agent.kubernetes_api',
 * { listen, url_path_prefix })`. Parts at the same path share one object; every object is strict
 * (an unknown key is an error that names it) and defaults to `{}`, so an empty file gives every
 * default. Types follow the parts: a module sees exactly the keys it owns or declares it reads.
 */
import { z } from 'zod';

/** Keys of one configuration object, contributed by one module. */
export interface ConfigPart<P extends string = string, S extends z.ZodRawShape = z.ZodRawShape> {
  /** Dotted path of the object the keys belong to; '' for the top level. */
  readonly path: P;
  readonly keys: S;
  /**
   * The keys as they appear in kas.example.yaml, at the level of `path` (no indentation): every
   * default written out, optional keys as comments. A test checks it against the defaults.
   */
  readonly example: string;
}

export function configPart<const P extends string, const S extends z.ZodRawShape>(path: P, keys: S, example: string): ConfigPart<P, S> {
  return { path, keys, example };
}

type Nest<P extends string, T> = P extends '' ? T : P extends `${infer H}.${infer R}` ? { [K in H]: Nest<R, T> } : { [K in P]: T };
type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
type PartOutput<T> = T extends ConfigPart<infer P, infer S> ? Nest<P, z.output<z.ZodObject<S>>> : never;

/** The validated configuration that a list of parts describes. */
export type ConfigOf<Parts extends readonly ConfigPart[]> = UnionToIntersection<PartOutput<Parts[number]>>;

interface Node {
  keys: Record<string, z.ZodType>;
  children: Map<string, Node>;
}

function nodeAt(root: Node, path: string): Node {
  let node = root;
  for (const name of path === '' ? [] : path.split('.')) {
    let child = node.children.get(name);
    if (!child) {
      child = { keys: {}, children: new Map() };
      node.children.set(name, child);
    }
    node = child;
  }
  return node;
}

function build(node: Node, path: string): z.ZodRawShape {
  const shape: Record<string, z.ZodType> = { ...node.keys };
  for (const [name, child] of node.children) {
    if (name in shape) throw new Error(`configuration parts disagree: ${path}${name} is both a key and an object of keys`);
    shape[name] = z.strictObject(build(child, `${path}${name}.`)).prefault({});
  }
  return shape;
}

/**
 * One strict schema from the parts of every module. Throws (a programming error, found by the
 * tests) when two parts declare the same key.
 */
export function composeSchema(parts: readonly ConfigPart[]): z.ZodObject {
  const root: Node = { keys: {}, children: new Map() };
  for (const part of parts) {
    const node = nodeAt(root, part.path);
    for (const [key, schema] of Object.entries(part.keys)) {
      if (key in node.keys) throw new Error(`configuration parts disagree: ${part.path ? `${part.path}.` : ''}${key} is declared twice`);
      node.keys[key] = schema as z.ZodType;
    }
  }
  return z.strictObject(build(root, ''));
}

interface ExampleNode {
  snippets: string[];
  children: Map<string, ExampleNode>;
}

/**
 * The example configuration file: every part's example under its path, in the order of the parts
 * (objects appear where their first part does), after `header` (comment lines).
 */
export function renderExample(parts: readonly ConfigPart[], header: string): string {
  const root: ExampleNode = { snippets: [], children: new Map() };
  for (const part of parts) {
    let node = root;
    for (const name of part.path === '' ? [] : part.path.split('.')) {
      let child = node.children.get(name);
      if (!child) {
        child = { snippets: [], children: new Map() };
        node.children.set(name, child);
      }
      node = child;
    }
    node.snippets.push(part.example.replace(/\n+$/, ''));
  }
  const out: string[] = header.replace(/\n+$/, '').split('\n');
  const write = (node: ExampleNode, indent: string) => {
    for (const snippet of node.snippets) for (const line of snippet.split('\n')) out.push(line === '' ? '' : `${indent}${line}`);
    for (const [name, child] of node.children) {
      out.push(`${indent}${name}:`);
      write(child, `${indent}  `);
    }
  };
  write(root, '');
  return `${out.join('\n')}\n`;
}
