import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentIdentity } from '../auth/types.js';
import { DirectoryConfigSource } from './directory-source.js';
import { MAX_CONFIG_FILE_BYTES } from './schema.js';

const agent: AgentIdentity = { agentId: 1, agentName: 'agent-one', projectId: null };
const sha = (s: string | Buffer) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

describe('DirectoryConfigSource', () => {
  let dir: string;
  let source: DirectoryConfigSource;
  const file = () => join(dir, 'agent-one', 'config.yaml');

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'agent-configs-'));
    source = new DirectoryConfigSource(dir);
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('no agent folder and no file are both no file; unchanged once known', async () => {
    expect(await source.read(agent, undefined)).toEqual({ commit: null, content: null });
    mkdirSync(join(dir, 'agent-one'));
    expect(await source.read(agent, null)).toBeNull();
  });

  test('the version is the content hash: the same bytes are unchanged, other bytes are new', async () => {
    mkdirSync(join(dir, 'agent-one'));
    writeFileSync(file(), 'observability: {}\n');
    const first = await source.read(agent, null);
    expect(first?.commit).toBe(sha('observability: {}\n'));
    expect(Buffer.from(first!.content!).toString()).toBe('observability: {}\n');
    // Rewritten with the same content: nothing to do.
    writeFileSync(file(), 'observability: {}\n');
    expect(await source.read(agent, first!.commit)).toBeNull();
    writeFileSync(file(), 'flux: {}\n');
    expect((await source.read(agent, first!.commit))?.commit).toBe(sha('flux: {}\n'));
  });

  test(`a file over ${MAX_CONFIG_FILE_BYTES} bytes is a configuration error; one at the limit is read`, async () => {
    mkdirSync(join(dir, 'agent-one'));
    writeFileSync(file(), Buffer.alloc(MAX_CONFIG_FILE_BYTES, 0x23));
    expect((await source.read(agent, undefined))?.content?.byteLength).toBe(MAX_CONFIG_FILE_BYTES);
    writeFileSync(file(), Buffer.alloc(MAX_CONFIG_FILE_BYTES * 4, 0x23));
    const big = await source.read(agent, undefined);
    expect(big?.content).toBeNull();
    expect(big?.problem?.message).toContain('the limit is 131072 bytes (128 KiB)');
  });

  test('a folder where the file should be is a configuration error, reported once', async () => {
    mkdirSync(file(), { recursive: true });
    const read = await source.read(agent, undefined);
    expect(read?.problem?.message).toBe('config.yaml is not a regular file');
    expect(await source.read(agent, read!.commit)).toBeNull();
  });

  test('names that are not DNS labels never leave the directory', async () => {
    await expect(source.read({ ...agent, agentName: '../etc' }, undefined)).rejects.toThrow('is not a DNS label');
  });
});
