/**
 * Manifest files to Kubernetes objects: YAML (several documents per file) and JSON, `kind: List`
 * expanded, each object checked for what server-side apply needs (apiVersion, kind, metadata.name).
 * Every problem is reported with its file (and document); the good objects go on.
 */
import { parseAllDocuments } from 'yaml';

export interface ManifestObject {
  /** The object as written (a plain JSON value). */
  object: Record<string, unknown> & { apiVersion: string; kind: string; metadata: Record<string, unknown> & { name: string; namespace?: string } };
  group: string;
  version: string;
  kind: string;
  name: string;
  /** As written; the applier fills in the default for namespaced kinds. */
  namespace: string | undefined;
  /** Where it came from: `path` or `path#<document index>`. */
  source: string;
}

export interface DecodeError {
  path: string;
  message: string;
}

/** Largest number of objects one snapshot may hold (kas caps files at 1,000; a file may hold many). */
export const MAX_OBJECTS = 10_000;

const NAME = /^[a-zA-Z0-9]([-a-zA-Z0-9._:]{0,251}[a-zA-Z0-9])?$/;

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

/** Checks one decoded document; returns the object or why it cannot be applied. */
export function checkObject(value: unknown, source: string): ManifestObject | string {
  if (!isMap(value)) return 'a manifest must be a mapping (an object)';
  const { apiVersion, kind, metadata } = value;
  if (typeof apiVersion !== 'string' || apiVersion === '' || !/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion)) return 'apiVersion must be a string like "v1" or "apps/v1"';
  if (typeof kind !== 'string' || !/^[A-Za-z][A-Za-z0-9]*$/.test(kind)) return 'kind must be a string like "ConfigMap"';
  if (!isMap(metadata)) return `${kind}: metadata must be a mapping`;
  const name = metadata.name;
  if (typeof name !== 'string' || name === '') return `${kind}: metadata.name is required (generateName cannot be applied)`;
  if (!NAME.test(name)) return `${kind} ${JSON.stringify(name)}: metadata.name is not a valid object name`;
  const namespace = metadata.namespace;
  if (namespace !== undefined && namespace !== null && (typeof namespace !== 'string' || !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(namespace))) {
    return `${kind} ${name}: metadata.namespace is not a valid namespace name`;
  }
  const { group, version } = splitApiVersion(apiVersion);
  return {
    object: value as ManifestObject['object'],
    group,
    version,
    kind,
    name,
    namespace: typeof namespace === 'string' && namespace !== '' ? namespace : undefined,
    source,
  };
}

/** Decodes one file: JSON when it ends in .json, else YAML with any number of documents. */
export function decodeFile(path: string, data: Buffer): { objects: ManifestObject[]; errors: DecodeError[] } {
  const objects: ManifestObject[] = [];
  const errors: DecodeError[] = [];
  const text = data.toString('utf8');
  const values: Array<{ value: unknown; source: string }> = [];
  if (/\.json$/i.test(path)) {
    try {
      values.push({ value: JSON.parse(text), source: path });
    } catch (err) {
      errors.push({ path, message: `not valid JSON: ${(err as Error).message}` });
      return { objects, errors };
    }
  } else {
    let docs;
    try {
      docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
    } catch (err) {
      errors.push({ path, message: `not valid YAML: ${(err as Error).message}` });
      return { objects, errors };
    }
    const list = Array.isArray(docs) ? docs : [docs];
    let index = 0;
    for (const doc of list) {
      const source = list.length > 1 ? `${path}#${index}` : path;
      index++;
      if (doc.errors.length > 0) {
        errors.push({ path: source, message: `not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}` });
        continue;
      }
      let value: unknown;
      try {
        value = doc.toJS({ maxAliasCount: 100 });
      } catch (err) {
        errors.push({ path: source, message: `not valid YAML: ${(err as Error).message}` });
        continue;
      }
      if (value === null || value === undefined) continue; // an empty document (a trailing ---)
      values.push({ value, source });
    }
  }
  for (const { value, source } of values) {
    // kubectl's `kind: List` (and FooList) of items.
    if (isMap(value) && typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items)) {
      value.items.forEach((item, i) => {
        const checked = checkObject(item, `${source}[${i}]`);
        if (typeof checked === 'string') errors.push({ path: `${source}[${i}]`, message: checked });
        else objects.push(checked);
      });
      continue;
    }
    const checked = checkObject(value, source);
    if (typeof checked === 'string') errors.push({ path: source, message: checked });
    else objects.push(checked);
  }
  return { objects, errors };
}
