/**
 * The answer's body from the tunnel stream to the client. kas reads WebSocket frames without
 * joining the socket reads they span (SocketWsTransport), so a 64 KiB DATA frame usually reaches
 * the stream as two pieces in the same turn. `src.pipe(dest)` would pause the stream after the
 * first piece (the client's socket queue is over its mark) and write the second one in a turn of its
 * own: two system calls per frame. Here the stream is paused at the end of the turn instead, so
 * what one turn delivered goes out in one write (a response corks its socket for the turn).
 * Memory stays bounded: a turn delivers at most one socket read, and the stream's window bounds it all.
 */
import type { Readable, Writable } from 'node:stream';

/**
 * Pipes `src` into `dest` as `src.pipe(dest)` does (dest ends when src ends; errors are not passed
 * on; stops when dest closes), pausing `src` for backpressure at the end of the turn.
 */
export function pipeByTurn(src: Readable, dest: Writable): void {
  let pauseQueued = false;
  const resume = (): void => {
    src.resume();
  };
  const pauseIfFull = (): void => {
    pauseQueued = false;
    if (!dest.writableNeedDrain || dest.destroyed) return;
    src.pause();
    dest.once('drain', resume);
  };
  const onData = (chunk: Buffer): void => {
    if (dest.destroyed || dest.writableEnded) return;
    if (!dest.write(chunk) && !pauseQueued) {
      pauseQueued = true;
      process.nextTick(pauseIfFull);
    }
  };
  const onEnd = (): void => {
    if (!dest.destroyed && !dest.writableEnded) dest.end();
  };
  const stop = (): void => {
    src.off('data', onData);
    src.off('end', onEnd);
    dest.off('drain', resume);
    src.pause();
  };
  src.on('data', onData);
  src.once('end', onEnd);
  dest.once('close', stop);
}
