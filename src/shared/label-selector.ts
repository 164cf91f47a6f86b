/**
 * Kubernetes label selectors as text (`app=web,tier!=db,env in (prod,staging),!legacy`): parsed
 * into requirements and matched against an object's labels. kas checks a selector in the agent
 * configuration with it; agentk matches involved objects' labels with it. The grammar is the API
 * server's: requirements separated by commas, each one of `key`, `!key`, `key=value`,
 * `key==value`, `key!=value`, `key in (v1,v2)`, `key notin (v1,v2)`.
 */

export type LabelRequirement =
  | { op: 'exists' | 'not_exists'; key: string }
  | { op: 'in' | 'not_in'; key: string; values: string[] };

/** Longest selector text accepted. */
export const MAX_LABEL_SELECTOR_LENGTH = 1024;

const KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

export class LabelSelectorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LabelSelectorError';
  }
}

function key(k: string): string {
  if (!KEY.test(k) || k.length > 317) throw new LabelSelectorError(`${JSON.stringify(k)} is not a label key`);
  return k;
}

function value(v: string): string {
  if (!VALUE.test(v)) throw new LabelSelectorError(`${JSON.stringify(v)} is not a label value`);
  return v;
}

/** Splits on commas outside parentheses. */
function split(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
    if (depth < 0 || depth > 1) throw new LabelSelectorError('unbalanced parentheses');
  }
  if (depth !== 0) throw new LabelSelectorError('unbalanced parentheses');
  parts.push(text.slice(start));
  return parts.map((p) => p.trim());
}

/** Parses a selector; the empty selector selects everything. Throws LabelSelectorError saying what is wrong. */
export function parseLabelSelector(text: string): LabelRequirement[] {
  if (text.length > MAX_LABEL_SELECTOR_LENGTH) throw new LabelSelectorError(`longer than ${MAX_LABEL_SELECTOR_LENGTH} characters`);
  if (text.trim() === '') return [];
  return split(text).map((part): LabelRequirement => {
    if (part === '') throw new LabelSelectorError('empty requirement');
    let m = /^(\S+?)\s+(in|notin)\s*\((.*)\)$/.exec(part);
    if (m) {
      const values = m[3]!.split(',').map((v) => value(v.trim()));
      return { op: m[2] === 'in' ? 'in' : 'not_in', key: key(m[1]!), values };
    }
    m = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (m) return { op: m[2] === '!=' ? 'not_in' : 'in', key: key(m[1]!), values: [value(m[3]!.trim())] };
    if (part.startsWith('!')) return { op: 'not_exists', key: key(part.slice(1).trim()) };
    return { op: 'exists', key: key(part) };
  });
}

/** Whether labels satisfy every requirement (Kubernetes semantics: `notin` and `!=` match a missing key). */
export function matchesLabels(requirements: readonly LabelRequirement[], labels: Readonly<Record<string, string>> | undefined): boolean {
  const l = labels ?? {};
  return requirements.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    switch (r.op) {
      case 'exists':
        return has;
      case 'not_exists':
        return !has;
      case 'in':
        return has && r.values.includes(l[r.key]!);
      case 'not_in':
        return !has || !r.values.includes(l[r.key]!);
    }
  });
}
