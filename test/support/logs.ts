/** Capturing a program's JSON log lines in tests (pino writes to it as its destination). */
import { Writable } from 'node:stream';

/** Collects what a logger writes, so tests can find a log line or check that nothing secret was logged. */
export class LogCapture extends Writable {
  private written = '';

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.written += chunk.toString('utf8');
    cb();
  }

  /** Every non-empty line written so far. */
  get lines(): string[] {
    return this.written.split('\n').filter((l) => l.trim() !== '');
  }

  /** The lines, joined by newlines. */
  get text(): string {
    return this.lines.join('\n');
  }

  /** The lines parsed as JSON log entries. */
  get entries(): Array<Record<string, unknown>> {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}
