import { readFileSync } from 'node:fs';
import { CLOSE_CODE_BASE, TUNNEL_ERROR_CODES, type TunnelErrorCode } from './errors.js';

/** docs/errors.md is the reference for callers; docs/protocol.md repeats the table for implementers. */
const DOCS = ['docs/errors.md', 'docs/protocol.md'];

interface DocumentedCode {
  wire: number;
  closeCode: number;
  line: number;
}

/** Rows of the form | `NAME` | wire | close code | ... in one document, by name. */
function documentedCodes(doc: string, text: string): { codes: Map<string, DocumentedCode>; duplicates: string[] } {
  const codes = new Map<string, DocumentedCode>();
  const duplicates: string[] = [];
  const row = /^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|/;
  text.split('\n').forEach((content, i) => {
    const m = row.exec(content);
    if (!m) return;
    const name = m[1]!;
    if (codes.has(name)) duplicates.push(`${name} is listed twice in ${doc} (lines ${codes.get(name)!.line} and ${i + 1})`);
    codes.set(name, { wire: Number(m[2]), closeCode: Number(m[3]), line: i + 1 });
  });
  return { codes, duplicates };
}

describe.each(DOCS)('%s documents every tunnel error code', (doc) => {
  const { codes: documented, duplicates } = documentedCodes(doc, readFileSync(new URL(`../../${doc}`, import.meta.url), 'utf8'));
  const registry = Object.keys(TUNNEL_ERROR_CODES) as TunnelErrorCode[];

  test('the table can be read at all', () => {
    expect(documented.size).toBeGreaterThan(0);
  });

  test('every code in TUNNEL_ERROR_CODES has a row with its exact wire number and close code', () => {
    const problems: string[] = [];
    for (const code of registry) {
      const { wire } = TUNNEL_ERROR_CODES[code];
      const row = documented.get(code);
      if (!row) {
        problems.push(`${code} (wire ${wire}) is missing from ${doc}: add a row "| \`${code}\` | ${wire} | ${CLOSE_CODE_BASE + wire} | ... |"`);
        continue;
      }
      if (row.wire !== wire) problems.push(`${code} is documented with wire number ${row.wire} (line ${row.line}) but TUNNEL_ERROR_CODES says ${wire}`);
      if (row.closeCode !== CLOSE_CODE_BASE + wire) problems.push(`${code} is documented with close code ${row.closeCode} (line ${row.line}) but it is ${CLOSE_CODE_BASE} + ${wire} = ${CLOSE_CODE_BASE + wire}`);
    }
    expect(problems).toEqual([]);
  });

  test('it lists no code that TUNNEL_ERROR_CODES no longer has, and none twice', () => {
    const stale = [...documented.entries()]
      .filter(([name]) => !(name in TUNNEL_ERROR_CODES))
      .map(([name, row]) => `${name} (line ${row.line}) is documented but is not in TUNNEL_ERROR_CODES: remove its row or restore the code`);
    expect([...stale, ...duplicates]).toEqual([]);
  });
});
