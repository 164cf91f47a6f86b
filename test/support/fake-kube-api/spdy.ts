/**
 * SPDY/3.1, server side, just enough for kubectl's moby/spdystream client (see fake-kube-api.ts for
 * what is and is not implemented).
 */
import zlib from 'node:zlib';

/** The SPDY/3 header compression dictionary (1423 bytes): length-prefixed words, then a plain tail. */
const SPDY_DICTIONARY: Buffer = (() => {
  const words = [
    'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding', 'accept-language', 'accept-ranges', 'age', 'allow',
    'authorization', 'cache-control', 'connection', 'content-base', 'content-encoding', 'content-language', 'content-length', 'content-location',
    'content-md5', 'content-range', 'content-type', 'date', 'etag', 'expect', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match',
    'if-range', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range',
    'referer', 'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via', 'warning', 'www-authenticate',
    'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url', 'public', 'set-cookie', 'keep-alive', 'origin',
  ];
  const tail =
    '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
    '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found' +
    '500 Internal Server Error501 Not Implemented503 Service Unavailable' +
    'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
    'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,' +
    'publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';
  const parts = words.map((w) => {
    const b = Buffer.alloc(4 + w.length);
    b.writeUInt32BE(w.length, 0);
    b.write(w, 4, 'latin1');
    return b;
  });
  parts.push(Buffer.from(tail, 'latin1'));
  return Buffer.concat(parts);
})();

function adler32(data: Buffer): number {
  let a = 1;
  let b = 0;
  for (const byte of data) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

const SPDY_VERSION = 3;
const SYN_STREAM = 1;
const SYN_REPLY = 2;
const RST_STREAM = 3;
const PING = 6;
const GOAWAY = 7;
const HEADERS = 8;
const FLAG_FIN = 0x01;
const RST_CANCEL = 5;

export type SpdyHeaders = Map<string, string[]>;

export interface SpdyHandler {
  onStream(id: number, headers: SpdyHeaders, fin: boolean): void;
  onData(id: number, data: Buffer, fin: boolean): void;
  onReset(id: number): void;
  onGoAway(): void;
  onProtocolError(message: string): void;
}

export class SpdyServerSession {
  private pending: Buffer = Buffer.alloc(0);
  /** Every compressed header byte received so far: the peer uses one zlib context for the connection. */
  private compressedIn: Buffer = Buffer.alloc(0);
  private inflatedLength = 0;
  private compressorStarted = false;
  private readonly closedLocally = new Set<number>();
  private readonly reset = new Set<number>();
  private failed = false;

  constructor(
    private readonly write: (bytes: Buffer) => void,
    private readonly handler: SpdyHandler,
  ) {}

  feed(chunk: Buffer): void {
    if (this.failed) return;
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (this.pending.length >= 8 && !this.failed) {
      const length = this.pending.readUIntBE(5, 3);
      if (this.pending.length < 8 + length) return;
      const frame = this.pending.subarray(0, 8 + length);
      this.pending = this.pending.subarray(8 + length);
      try {
        this.onFrame(frame);
      } catch (err) {
        this.failed = true;
        this.handler.onProtocolError(err instanceof Error ? err.message : String(err));
      }
    }
  }

  private onFrame(frame: Buffer): void {
    const flags = frame[4]!;
    const payload = frame.subarray(8);
    if ((frame[0]! & 0x80) === 0) {
      const id = frame.readUInt32BE(0) & 0x7fffffff;
      this.handler.onData(id, payload, (flags & FLAG_FIN) !== 0);
      return;
    }
    const version = frame.readUInt16BE(0) & 0x7fff;
    if (version !== SPDY_VERSION) throw new Error(`unsupported SPDY version ${version}`);
    const type = frame.readUInt16BE(2);
    switch (type) {
      case SYN_STREAM: {
        const id = payload.readUInt32BE(0) & 0x7fffffff;
        const headers = this.decodeHeaders(payload.subarray(10));
        this.sendControl(SYN_REPLY, 0, Buffer.concat([uint32(id), this.encodeHeaders([])]));
        this.handler.onStream(id, headers, (flags & FLAG_FIN) !== 0);
        return;
      }
      case SYN_REPLY:
      case HEADERS:
        // Nothing to do with them, but their header block must go through the shared zlib context.
        this.decodeHeaders(payload.subarray(4));
        return;
      case RST_STREAM: {
        const id = payload.readUInt32BE(0) & 0x7fffffff;
        this.reset.add(id);
        this.handler.onReset(id);
        return;
      }
      case PING:
        this.sendControl(PING, 0, payload);
        return;
      case GOAWAY:
        this.handler.onGoAway();
        return;
      default:
        // SETTINGS, WINDOW_UPDATE, CREDENTIAL: ignored (no flow control here).
        return;
    }
  }

  /** Sends data on a stream (and/or a FIN). Nothing is sent on streams the peer reset or we finished. */
  sendData(id: number, data: Buffer, fin = false): void {
    if (this.closedLocally.has(id) || this.reset.has(id)) return;
    const max = 0xffffff; // 24-bit length field
    let offset = 0;
    do {
      const chunk = data.subarray(offset, offset + max);
      offset += chunk.length;
      const last = offset >= data.length;
      const header = Buffer.alloc(8);
      header.writeUInt32BE(id & 0x7fffffff, 0);
      header.writeUInt32BE((((fin && last ? FLAG_FIN : 0) << 24) | chunk.length) >>> 0, 4);
      this.write(Buffer.concat([header, chunk]));
    } while (offset < data.length);
    if (fin) this.closedLocally.add(id);
  }

  resetStream(id: number): void {
    if (this.reset.has(id)) return;
    this.reset.add(id);
    this.sendControl(RST_STREAM, 0, Buffer.concat([uint32(id), uint32(RST_CANCEL)]));
  }

  private sendControl(type: number, flags: number, payload: Buffer): void {
    const header = Buffer.alloc(8);
    header.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
    header.writeUInt16BE(type, 2);
    header.writeUInt32BE(((flags << 24) | payload.length) >>> 0, 4);
    this.write(Buffer.concat([header, payload]));
  }

  private decodeHeaders(block: Buffer): SpdyHeaders {
    // Re-inflate everything received so far (the context spans the connection) and keep the new output.
    // Quadratic, but a session carries a handful of small header blocks.
    this.compressedIn = Buffer.concat([this.compressedIn, block]);
    const out = zlib.inflateSync(this.compressedIn, { dictionary: SPDY_DICTIONARY, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    const raw = out.subarray(this.inflatedLength);
    this.inflatedLength = out.length;
    const headers: SpdyHeaders = new Map();
    let pos = 0;
    const count = raw.readUInt32BE(pos);
    pos += 4;
    for (let i = 0; i < count; i++) {
      const nameLength = raw.readUInt32BE(pos);
      const name = raw.subarray(pos + 4, pos + 4 + nameLength).toString('latin1');
      pos += 4 + nameLength;
      const valueLength = raw.readUInt32BE(pos);
      const value = raw.subarray(pos + 4, pos + 4 + valueLength).toString('latin1');
      pos += 4 + valueLength;
      headers.set(name.toLowerCase(), value.split('\0'));
    }
    return headers;
  }

  /** A header block as zlib "stored" blocks followed by an empty one (what a sync flush ends with). */
  private encodeHeaders(pairs: Array<[string, string]>): Buffer {
    const rawParts: Buffer[] = [uint32(pairs.length)];
    for (const [name, value] of pairs) {
      const n = Buffer.from(name.toLowerCase(), 'latin1');
      const v = Buffer.from(value, 'latin1');
      rawParts.push(uint32(n.length), n, uint32(v.length), v);
    }
    const raw = Buffer.concat(rawParts);
    const out: Buffer[] = [];
    if (!this.compressorStarted) {
      // CMF 0x78 (deflate, 32K window), FLG 0x20 (FDICT; 0x7820 % 31 == 0), then the dictionary's Adler-32.
      out.push(Buffer.from([0x78, 0x20]), uint32(adler32(SPDY_DICTIONARY)));
      this.compressorStarted = true;
    }
    for (let offset = 0; offset < raw.length; offset += 0xffff) {
      const chunk = raw.subarray(offset, offset + 0xffff);
      const head = Buffer.alloc(5);
      head[0] = 0x00; // BFINAL=0, BTYPE=00 (stored)
      head.writeUInt16LE(chunk.length, 1);
      head.writeUInt16LE(~chunk.length & 0xffff, 3);
      out.push(head, chunk);
    }
    out.push(Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]));
    return Buffer.concat(out);
  }
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}
