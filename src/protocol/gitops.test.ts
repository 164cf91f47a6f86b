import fc from 'fast-check';
import { Packr } from 'msgpackr';
import {
  GITOPS_MANIFESTS_STREAM,
  MAX_FILE_RECORD_BYTES,
  MAX_MANIFEST_FILES,
  ManifestRecordDecoder,
  SnapshotAssembler,
  decodeManifestOpenHead,
  decodeManifestReplyHead,
  encodeEndRecord,
  encodeFileRecord,
  encodeManifestOpenHead,
  encodeSnapshotHeader,
  isSafeManifestPath,
  type ManifestRecord,
  type ManifestSettingsWire,
  type ReceivedSnapshot,
} from './gitops.js';
import { isTunnelError } from './errors.js';
import { protocolError } from './testing/protocol-error.js';

const settings: ManifestSettingsWire = {
  default_namespace: 'default',
  reconcile_timeout: 3_600_000,
  dry_run_strategy: 'none',
  prune: true,
  prune_timeout: 3_600_000,
  prune_propagation_policy: 'foreground',
  inventory_policy: 'must_match',
};

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
function raw(value: unknown): Buffer {
  const body = packr.pack(value);
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

function header(files: number, bytes: number, extra: Record<string, unknown> = {}): Buffer {
  return raw({ k: 'snapshot', commit: 'c1', settings, settings_digest: 'd', complete: true, errors: [], files, bytes, ...extra });
}

/** Feeds bytes in small pieces and assembles every snapshot. */
function receive(bytes: Buffer, pieceSize = 7): ReceivedSnapshot[] {
  const decoder = new ManifestRecordDecoder();
  const assembler = new SnapshotAssembler();
  const out: ReceivedSnapshot[] = [];
  for (let i = 0; i < bytes.length; i += pieceSize) {
    for (const r of decoder.push(bytes.subarray(i, i + pieceSize))) {
      const s = assembler.take(r);
      if (s) out.push(s);
    }
  }
  return out;
}

describe('gitops_manifests heads', () => {
  test('the open head round-trips and is checked', () => {
    const head = encodeManifestOpenHead({ projectId: 'group/project', commit: 'abc', settingsDigest: 'd1' });
    expect(head.t).toBe(GITOPS_MANIFESTS_STREAM);
    expect(decodeManifestOpenHead(head)).toEqual({ projectId: 'group/project', commit: 'abc', settingsDigest: 'd1' });
    expect(decodeManifestOpenHead({ t: GITOPS_MANIFESTS_STREAM, project_id: 'p' })).toEqual({ projectId: 'p' });
    expect(protocolError(() => decodeManifestOpenHead({ t: GITOPS_MANIFESTS_STREAM }))).toMatch(/project_id/);
    expect(protocolError(() => decodeManifestOpenHead({ t: GITOPS_MANIFESTS_STREAM, project_id: 'x'.repeat(2000) }))).toMatch(/project_id/);
    expect(protocolError(() => decodeManifestOpenHead({ t: GITOPS_MANIFESTS_STREAM, project_id: 'p', commit: 5 }))).toMatch(/commit/);
    expect(protocolError(() => decodeManifestOpenHead({ t: 'other', project_id: 'p' }))).toMatch(/stream type/);
  });

  test('the reply head is checked', () => {
    expect(decodeManifestReplyHead({ accepted: true })).toEqual({ accepted: true });
    expect(decodeManifestReplyHead({ accepted: false, reason: 'no' })).toEqual({ accepted: false, reason: 'no' });
    expect(protocolError(() => decodeManifestReplyHead({}))).toMatch(/accepted/);
    expect(protocolError(() => decodeManifestReplyHead({ accepted: false, reason: 'x'.repeat(5000) }))).toMatch(/reason/);
  });
});

describe('gitops_manifests records', () => {
  test('a snapshot round-trips through the decoder in small pieces', () => {
    const files = [
      { path: 'a.yaml', data: Buffer.from('kind: ConfigMap\n') },
      { path: 'dir/b.json', data: Buffer.from('{}') },
    ];
    const bytes = Buffer.concat([
      encodeSnapshotHeader({ commit: 'c1', settings, settingsDigest: 'd', complete: false, errors: [{ code: 'MANIFEST_FILE_TOO_LARGE', message: 'big', path: 'c.yaml' }], files: 2, bytes: 18 }),
      ...files.map((f) => encodeFileRecord(f)),
      encodeEndRecord('c1'),
      encodeSnapshotHeader({ commit: '', settings, settingsDigest: 'd', complete: false, errors: [{ code: 'MANIFEST_PROJECT_FORBIDDEN', message: 'no' }], files: 0, bytes: 0 }),
      encodeEndRecord(''),
    ]);
    const got = receive(bytes);
    expect(got).toHaveLength(2);
    expect(got[0]!.header).toMatchObject({ commit: 'c1', complete: false, files: 2, bytes: 18, settings, errors: [{ code: 'MANIFEST_FILE_TOO_LARGE', message: 'big', path: 'c.yaml' }] });
    expect(got[0]!.files.map((f) => [f.path, Buffer.from(f.data).toString()])).toEqual([
      ['a.yaml', 'kind: ConfigMap\n'],
      ['dir/b.json', '{}'],
    ]);
    expect(got[1]!.header).toMatchObject({ commit: '', complete: false, files: 0 });
  });

  test('a length prefix over the limit is refused before the record is buffered', () => {
    const decoder = new ManifestRecordDecoder();
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(MAX_FILE_RECORD_BYTES + 1, 0);
    expect(protocolError(() => decoder.push(prefix))).toMatch(/records are 1 to/);
    const zero = Buffer.alloc(4);
    expect(protocolError(() => new ManifestRecordDecoder().push(zero))).toMatch(/0 bytes/);
  });

  test('hostile records are refused with PROTOCOL_ERROR', () => {
    const bad: Array<[string, Buffer]> = [
      ['not msgpack', Buffer.from([0, 0, 0, 1, 0xc1])],
      ['not a map', raw([1, 2])],
      ['unknown kind', raw({ k: 'other' })],
      ['path climbs out', Buffer.concat([header(1, 1), raw({ k: 'file', path: '../etc/passwd', data: Buffer.from('x') })])],
      ['absolute path', Buffer.concat([header(1, 1), raw({ k: 'file', path: '/etc/passwd', data: Buffer.from('x') })])],
      ['data not binary', Buffer.concat([header(1, 1), raw({ k: 'file', path: 'a.yaml', data: 'x' })])],
      ['duplicate path', Buffer.concat([header(2, 2), raw({ k: 'file', path: 'a.yaml', data: Buffer.from('x') }), raw({ k: 'file', path: 'a.yaml', data: Buffer.from('y') })])],
      ['more files than announced', Buffer.concat([header(0, 0), raw({ k: 'file', path: 'a.yaml', data: Buffer.from('') })])],
      ['more bytes than announced', Buffer.concat([header(1, 1), raw({ k: 'file', path: 'a.yaml', data: Buffer.from('xx') })])],
      ['too few files at the end', Buffer.concat([header(2, 1), raw({ k: 'file', path: 'a.yaml', data: Buffer.from('x') }), raw({ k: 'end', commit: 'c1' })])],
      ['end names another commit', Buffer.concat([header(0, 0), raw({ k: 'end', commit: 'c2' })])],
      ['file outside a snapshot', raw({ k: 'file', path: 'a.yaml', data: Buffer.from('x') })],
      ['header inside a snapshot', Buffer.concat([header(0, 0), header(0, 0)])],
      ['too many files announced', header(MAX_MANIFEST_FILES + 1, 0)],
      ['too many bytes announced', header(1, 21 * 1024 * 1024)],
      ['no commit but files', header(1, 1, { commit: '' })],
      ['bad settings', header(0, 0, { settings: { ...settings, dry_run_strategy: 'sometimes' } })],
      ['bad namespace', header(0, 0, { settings: { ...settings, default_namespace: 'Not/A/Namespace' } })],
      ['negative timeout', header(0, 0, { settings: { ...settings, prune_timeout: -1 } })],
      ['errors not a list', header(0, 0, { errors: 'x' })],
      ['too many errors', header(0, 0, { errors: Array.from({ length: 101 }, () => ({ code: 'X', message: '' })) })],
    ];
    for (const [what, bytes] of bad) {
      let message = '';
      try {
        receive(bytes, 3);
      } catch (err) {
        if (isTunnelError(err) && err.code === 'PROTOCOL_ERROR') message = err.message;
        else throw err;
      }
      expect({ what, refused: message !== '' }).toEqual({ what, refused: true });
    }
  });

  test('a record over 5 MiB of data is refused', () => {
    const decoder = new ManifestRecordDecoder();
    const assembler = new SnapshotAssembler();
    assembler.take(decoder.push(header(1, 5 * 1024 * 1024))[0]!);
    const big = raw({ k: 'file', path: 'a.yaml', data: Buffer.alloc(5 * 1024 * 1024 + 1) });
    expect(protocolError(() => decoder.push(big).forEach((r: ManifestRecord) => assembler.take(r)))).toMatch(/larger than|bytes; records/);
  });

  test('safe paths', () => {
    expect(isSafeManifestPath('a/b.yaml')).toBe(true);
    for (const p of ['', '/a', 'a//b', 'a/./b', 'a/../b', '..', 'a\\b', 'a\0b', 'a/', 'x'.repeat(5000)]) expect({ p, safe: isSafeManifestPath(p) }).toEqual({ p, safe: false });
  });
});

describe('docs/gitops.md', () => {
  test('lists every MANIFEST_* code, and no other', async () => {
    const { readFileSync } = await import('node:fs');
    const { MANIFEST_ERROR_CODES } = await import('./gitops.js');
    const doc = readFileSync(new URL('../../docs/gitops.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\|\s*`(MANIFEST_[A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
    expect(rows.sort()).toEqual(Object.keys(MANIFEST_ERROR_CODES).sort());
  });
});

describe('gitops_manifests records under random input', () => {
  const valid = Buffer.concat([
    encodeSnapshotHeader({ commit: 'c1', settings, settingsDigest: 'd', complete: true, errors: [], files: 2, bytes: 5 }),
    encodeFileRecord({ path: 'a.yaml', data: Buffer.from('abc') }),
    encodeFileRecord({ path: 'b/c.json', data: Buffer.from('{}') }),
    encodeEndRecord('c1'),
  ]);

  /** Feeds everything; only PROTOCOL_ERROR may come out, and anything handed over is within bounds. */
  function survive(bytes: Uint8Array, piece: number): void {
    const decoder = new ManifestRecordDecoder();
    const assembler = new SnapshotAssembler();
    try {
      for (let i = 0; i < bytes.length; i += piece) {
        for (const r of decoder.push(bytes.subarray(i, i + piece))) {
          const s = assembler.take(r);
          if (s) {
            expect(new Set(s.files.map((f) => f.path)).size).toBe(s.files.length);
            expect(s.files.every((f) => isSafeManifestPath(f.path))).toBe(true);
          }
        }
      }
    } catch (err) {
      if (!(isTunnelError(err) && err.code === 'PROTOCOL_ERROR')) throw err;
    }
  }

  test('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), fc.integer({ min: 1, max: 64 }), (bytes, piece) => survive(bytes, piece)), { numRuns: 500 });
  });

  test('valid snapshots with bytes flipped, cut or inserted', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'cut', 'insert')), { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 97 }), (edits, piece) => {
        let b = Buffer.from(valid);
        for (const [at, value, kind] of edits) {
          const i = Math.min(at, b.length - 1);
          if (kind === 'flip') b[i] = value;
          else if (kind === 'cut') b = b.subarray(0, i);
          else b = Buffer.concat([b.subarray(0, i), Buffer.from([value]), b.subarray(i)]);
          if (b.length === 0) break;
        }
        survive(b, piece);
      }),
      { numRuns: 1000 },
    );
  });
});
