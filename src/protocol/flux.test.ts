import {
  decodeFluxDownMessage,
  decodeFluxReplyHead,
  decodeFluxSubscribe,
  encodeFluxMessage,
  FluxMessageReader,
  isProjectPath,
  MAX_FLUX_MESSAGE_BYTES,
  MAX_FLUX_PROJECTS,
} from './flux.js';
import { protocolError } from './testing/protocol-error.js';

describe('flux_git_push messages', () => {
  test('messages survive any cutting of the stream data', () => {
    const messages = [
      { type: 'subscribe' as const, projects: ['acme/app', 'acme/sub/lib'] },
      { type: 'push' as const, project: 'acme/app' },
      { type: 'heartbeat' as const },
    ];
    const bytes = Buffer.concat(messages.map((m) => encodeFluxMessage(m)));
    for (const size of [1, 2, 3, 5, 7, bytes.length]) {
      const reader = new FluxMessageReader();
      const out: unknown[] = [];
      for (let i = 0; i < bytes.length; i += size) out.push(...reader.push(bytes.subarray(i, i + size)));
      expect(out).toEqual(messages);
      expect(reader.pending).toBe(0);
    }
  });

  test('an announced length over the limit is refused before anything is buffered', () => {
    const reader = new FluxMessageReader();
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(MAX_FLUX_MESSAGE_BYTES + 1, 0);
    expect(protocolError(() => reader.push(prefix))).toMatch(/limit/);
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(0xffffffff, 0);
    protocolError(() => new FluxMessageReader().push(huge));
  });

  test('non-JSON and non-UTF-8 bodies are refused', () => {
    const frame = (body: Buffer) => {
      const p = Buffer.alloc(4);
      p.writeUInt32BE(body.length, 0);
      return Buffer.concat([p, body]);
    };
    protocolError(() => new FluxMessageReader().push(frame(Buffer.from('{nope'))));
    protocolError(() => new FluxMessageReader().push(frame(Buffer.from([0x22, 0xff, 0xfe, 0x22]))));
  });

  test('subscribe: shapes, paths, the limit, duplicates', () => {
    expect(decodeFluxSubscribe({ type: 'subscribe', projects: ['a/b', 'A/B', 'g/s/p'] })).toEqual({ type: 'subscribe', projects: ['a/b', 'g/s/p'] });
    expect(decodeFluxSubscribe({ type: 'subscribe', projects: [] }).projects).toEqual([]);
    for (const hostile of [
      null,
      [],
      'subscribe',
      { type: 'push', project: 'a/b' },
      { type: 'subscribe' },
      { type: 'subscribe', projects: 'a/b' },
      { type: 'subscribe', projects: [1] },
      { type: 'subscribe', projects: [{}] },
      { type: 'subscribe', projects: ['single'] },
      { type: 'subscribe', projects: ['a//b'] },
      { type: 'subscribe', projects: ['../etc/passwd'] },
      { type: 'subscribe', projects: ['a/b.git'] },
      { type: 'subscribe', projects: ['a/b?x=1'] },
      { type: 'subscribe', projects: [`a/${'x'.repeat(2000)}`] },
      { type: 'subscribe', projects: Array.from({ length: MAX_FLUX_PROJECTS + 1 }, (_, i) => `g/p${i}`) },
    ]) {
      protocolError(() => decodeFluxSubscribe(hostile));
    }
    // kas's own, smaller bound.
    expect(protocolError(() => decodeFluxSubscribe({ type: 'subscribe', projects: ['a/b', 'a/c', 'a/d'] }, 2))).toMatch(/limit is 2/);
  });

  test('down messages and the reply head', () => {
    expect(decodeFluxDownMessage({ type: 'heartbeat' })).toEqual({ type: 'heartbeat' });
    expect(decodeFluxDownMessage({ type: 'push', project: 'a/b' })).toEqual({ type: 'push', project: 'a/b' });
    expect(decodeFluxDownMessage({ type: 'subscribed', accepted: ['a/b'], refused: [{ project: 'a/c', reason: 'no' }] })).toEqual({ type: 'subscribed', accepted: ['a/b'], refused: [{ project: 'a/c', reason: 'no' }] });
    for (const hostile of [
      { type: 'push' },
      { type: 'push', project: 7 },
      { type: 'subscribed', accepted: 'a/b', refused: [] },
      { type: 'subscribed', accepted: [], refused: [{ project: 'a/c' }] },
      { type: 'subscribed', accepted: [], refused: [{ project: 'a/c', reason: 'x'.repeat(10_000) }] },
      { type: 'subscribe', projects: [] },
      { type: 'what' },
      [],
    ]) {
      protocolError(() => decodeFluxDownMessage(hostile));
    }
    expect(decodeFluxReplyHead({ heartbeatMs: 30_000 })).toEqual({ heartbeatMs: 30_000 });
    for (const heartbeatMs of [undefined, 0, 1.5, -1, '30000', 10 ** 9]) protocolError(() => decodeFluxReplyHead({ heartbeatMs } as never));
  });

  test('project paths', () => {
    for (const ok of ['a/b', 'group/sub/project', 'Group_1/my.project-x']) expect(isProjectPath(ok)).toBe(true);
    for (const bad of ['', 'a', '/a/b', 'a/b/', 'a/.b', 'a/-b', 'a/b.atom', 'a b/c', 'a/%2e%2e', 7]) expect(isProjectPath(bad)).toBe(false);
  });
});
