import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeByTurn } from './pipe-by-turn.js';

/** A destination with a 16 KiB mark whose writes complete a turn later, like a busy socket. */
function slowSink() {
  const written: Buffer[] = [];
  const dest = new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _enc, done) {
      written.push(chunk);
      setImmediate(done);
    },
  });
  return { dest, written };
}

const turn = () => new Promise((r) => setImmediate(r));

describe('pipeByTurn', () => {
  test('chunks the source gives in one turn all reach the destination in that turn (src.pipe stops after the first)', async () => {
    const piece = Buffer.alloc(40 * 1024, 1);
    const run = async (pipeIt: (src: Readable, dest: Writable) => void) => {
      const src = new PassThrough();
      const { dest } = slowSink();
      pipeIt(src, dest);
      await turn();
      src.write(piece);
      src.write(piece);
      return dest.writableLength;
    };
    expect(await run((s, d) => s.pipe(d))).toBeLessThan(2 * piece.byteLength);
    expect(await run(pipeByTurn)).toBe(2 * piece.byteLength);
  });

  test('the source is paused at the end of a turn the destination is full, and resumed at its drain; everything arrives in order, and the destination ends', async () => {
    const src = new PassThrough({ highWaterMark: 16 * 1024 });
    const { dest, written } = slowSink();
    pipeByTurn(src, dest);
    await turn();
    src.write(Buffer.alloc(40 * 1024, 1));
    expect(src.isPaused()).toBe(false);
    await new Promise((r) => process.nextTick(r));
    expect(src.readableFlowing).toBe(false);
    const finished = new Promise((r) => dest.once('finish', r));
    for (let i = 2; i < 10; i++) src.write(Buffer.alloc(1000, i));
    src.end();
    await finished;
    const all = Buffer.concat(written);
    expect(all.byteLength).toBe(40 * 1024 + 8 * 1000);
    expect([...new Set(all)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test('stops when the destination closes: nothing more is written to it', async () => {
    const src = new PassThrough();
    const { dest, written } = slowSink();
    pipeByTurn(src, dest);
    src.write(Buffer.from('a'));
    await turn();
    dest.destroy();
    await new Promise((r) => dest.once('close', r));
    src.write(Buffer.from('b'));
    await turn();
    expect(Buffer.concat(written).toString()).toBe('a');
  });
});
