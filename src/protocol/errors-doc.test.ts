import { readFileSync } from 'node:fs';
import { PROGRAM_ERROR_CODES, type ProgramErrorCode, type ProgramErrorInfo } from '../shared/errors.js';
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

interface DocumentedProgramCode {
  program: string;
  exitCode: string;
  httpStatus: string;
  line: number;
}

/** Rows of the form | `NAME` | kas or agentk | exit code or - | statuses or - | ... in docs/errors.md, by name. */
function documentedProgramCodes(text: string): { codes: Map<string, DocumentedProgramCode>; duplicates: string[] } {
  const codes = new Map<string, DocumentedProgramCode>();
  const duplicates: string[] = [];
  const row = /^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|\s*(kas|agentk)\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|/;
  text.split('\n').forEach((content, i) => {
    const m = row.exec(content);
    if (!m) return;
    const name = m[1]!;
    if (codes.has(name)) duplicates.push(`${name} is listed twice in docs/errors.md (lines ${codes.get(name)!.line} and ${i + 1})`);
    codes.set(name, { program: m[2]!, exitCode: m[3]!, httpStatus: m[4]!, line: i + 1 });
  });
  return { codes, duplicates };
}

/** How docs/errors.md writes an exit code or a list of statuses: `-` for none. */
function cell(value: number | readonly number[] | undefined): string {
  if (value === undefined) return '-';
  return typeof value === 'number' ? String(value) : value.join(', ');
}

describe('docs/errors.md documents every error code of kas and agentk', () => {
  const { codes: documented, duplicates } = documentedProgramCodes(readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8'));
  const registry = Object.keys(PROGRAM_ERROR_CODES) as ProgramErrorCode[];

  test('the table can be read at all', () => {
    expect(documented.size).toBeGreaterThan(0);
  });

  test('every code in PROGRAM_ERROR_CODES has a row with its program, exit code and HTTP statuses', () => {
    const problems: string[] = [];
    for (const code of registry) {
      const info: ProgramErrorInfo = PROGRAM_ERROR_CODES[code];
      const expected = { program: info.program, exitCode: cell(info.exitCode), httpStatus: cell(info.httpStatus) };
      const row = documented.get(code);
      if (!row) {
        problems.push(`${code} is missing from docs/errors.md: add a row "| \`${code}\` | ${expected.program} | ${expected.exitCode} | ${expected.httpStatus} | ... |"`);
        continue;
      }
      for (const column of ['program', 'exitCode', 'httpStatus'] as const) {
        if (row[column] !== expected[column]) problems.push(`${code} is documented with ${column} "${row[column]}" (line ${row.line}) but PROGRAM_ERROR_CODES says "${expected[column]}"`);
      }
    }
    expect(problems).toEqual([]);
  });

  test('it lists no code that PROGRAM_ERROR_CODES no longer has, and none twice', () => {
    const stale = [...documented.entries()]
      .filter(([name]) => !(name in PROGRAM_ERROR_CODES))
      .map(([name, row]) => `${name} (line ${row.line}) is documented as an error of ${row.program} but is not in PROGRAM_ERROR_CODES: remove its row or restore the code`);
    expect([...stale, ...duplicates]).toEqual([]);
  });

  test('no code is both a tunnel code and a program code, so a code names one error', () => {
    expect(registry.filter((code) => code in TUNNEL_ERROR_CODES)).toEqual([]);
  });
});
