import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import type { MessageTransport } from '../protocol/transport.js';
import { TunnelWebSocketServer } from './tunnel-websocket.js';

/** What the accepting side's transport reported. */
interface Seen {
  transport: MessageTransport;
  messages: Buffer[];
  closed: Promise<{ code: number; reason: string }>;
}

/** A server whose upgrades kas's TunnelWebSocketServer accepts; each transport is started at once, recording what it reports. */
async function server() {
  const wss = new TunnelWebSocketServer({ limits: { maxFrameSize: 64 * 1024 } });
  const srv = http.createServer();
  const accepted: Seen[] = [];
  const waiters: Array<(s: Seen) => void> = [];
  srv.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    wss.accept(req, socket, head, (transport) => {
      const messages: Buffer[] = [];
      let report!: (c: { code: number; reason: string }) => void;
      const closed = new Promise<{ code: number; reason: string }>((r) => (report = r));
      transport.start({
        message: (data) => messages.push(Buffer.from(data)),
        messageParts: (pieces) => messages.push(Buffer.concat(pieces)),
        drain: () => undefined,
        closed: (code, reason) => report({ code, reason }),
      });
      const seen = { transport, messages, closed };
      accepted.push(seen);
      waiters.shift()?.(seen);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  return {
    port,
    url: `ws://127.0.0.1:${port}/`,
    next: () => (accepted.length > 0 ? Promise.resolve(accepted.shift()!) : new Promise<Seen>((r) => waiters.push(r))),
    async close() {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

/** Sends a raw upgrade request and resolves with the answer's head (up to the blank line) and the socket. */
async function rawUpgrade(port: number, lines: string[]): Promise<{ head: string; socket: net.Socket; rest: Buffer }> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  let got = Buffer.alloc(0);
  for (;;) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    got = Buffer.concat([got, chunk]);
    const end = got.indexOf('\r\n\r\n');
    if (end >= 0) return { head: got.subarray(0, end).toString(), socket, rest: got.subarray(end + 4) };
  }
}

const upgradeLines = (key = 'dGhlIHNhbXBsZSBub25jZQ==', version = '13', method = 'GET') => [
  `${method} / HTTP/1.1`,
  'Host: kas',
  'Upgrade: websocket',
  'Connection: Upgrade',
  `Sec-WebSocket-Key: ${key}`,
  `Sec-WebSocket-Version: ${version}`,
];

let srv: Awaited<ReturnType<typeof server>>;
beforeEach(async () => {
  srv = await server();
});
afterEach(async () => {
  await srv.close();
});

describe('the opening handshake kas answers', () => {
  test('answers 101 with the Sec-WebSocket-Accept of RFC 6455\'s example, and no extension', async () => {
    const { head, socket } = await rawUpgrade(srv.port, [...upgradeLines(), 'Sec-WebSocket-Extensions: permessage-deflate']);
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 101 Switching Protocols');
    expect(head).toContain('Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    expect(head.toLowerCase()).not.toContain('extensions');
    socket.destroy();
  });

  test.each([
    ['a malformed key', upgradeLines('not-a-key'), 400],
    ['an unknown version', upgradeLines(undefined, '7'), 400],
    ['a method other than GET', upgradeLines(undefined, undefined, 'POST'), 405],
  ])('refuses %s with %d', async (_name, lines, status) => {
    const { head, socket } = await rawUpgrade(srv.port, lines);
    expect(head.split('\r\n')[0]).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
    if (status === 400 && lines.includes('Sec-WebSocket-Version: 7')) expect(head).toContain('Sec-WebSocket-Version: 13, 8');
    socket.destroy();
  });

  test('echoes the first subprotocol offered (a ws client fails without an answer)', async () => {
    const ws = new WebSocket(srv.url, ['tunnel.v1', 'other'], { perMessageDeflate: false });
    await once(ws, 'open');
    expect(ws.protocol).toBe('tunnel.v1');
    ws.terminate();
  });
});

describe('SocketWsTransport, against a ws client', () => {
  test('messages both ways, binary, whole, in order; a big one that spans reads arrives byte-exact', async () => {
    const ws = new WebSocket(srv.url, { perMessageDeflate: false });
    await once(ws, 'open');
    const seen = await srv.next();
    const big = Buffer.alloc(60_000, 7);
    for (let i = 0; i < big.length; i += 13) big[i] = i & 0xff;
    ws.send(Buffer.from('one'));
    ws.send(big);
    ws.send(Buffer.alloc(0));
    while (seen.messages.length < 3) await new Promise((r) => setTimeout(r, 5));
    expect(seen.messages[0]!.toString()).toBe('one');
    expect(seen.messages[1]!.equals(big)).toBe(true);
    expect(seen.messages[2]!.byteLength).toBe(0);
    const received = once(ws, 'message') as Promise<[Buffer, boolean]>;
    seen.transport.sendParts!(Buffer.from('head:'), [Buffer.from('a'), big]);
    const [data, binary] = await received;
    expect(binary).toBe(true);
    expect(data.equals(Buffer.concat([Buffer.from('head:a'), big]))).toBe(true);
    ws.terminate();
  });

  test('answers a ping with a pong of the same payload', async () => {
    const ws = new WebSocket(srv.url, { perMessageDeflate: false });
    await once(ws, 'open');
    ws.ping(Buffer.from('are you there'));
    const [payload] = (await once(ws, 'pong')) as [Buffer];
    expect(payload.toString()).toBe('are you there');
    ws.terminate();
  });

  test('a text message closes the connection with 4005 (MALFORMED_FRAME) and is not delivered', async () => {
    const ws = new WebSocket(srv.url, { perMessageDeflate: false });
    await once(ws, 'open');
    const seen = await srv.next();
    ws.send('text');
    const [code] = (await once(ws, 'close')) as [number];
    expect(code).toBe(4005);
    expect(seen.messages).toHaveLength(0);
    expect((await seen.closed).code).toBe(4005);
  });

  test('the client\'s close is echoed and reported with its code and reason', async () => {
    const ws = new WebSocket(srv.url, { perMessageDeflate: false });
    await once(ws, 'open');
    const seen = await srv.next();
    ws.close(4012, 'keepalive timeout');
    const [code] = (await once(ws, 'close')) as [number];
    expect(code).toBe(4012);
    expect(await seen.closed).toEqual({ code: 4012, reason: 'keepalive timeout' });
  });

  test('closing sends the code and reason; once the client echoes, the socket ends and the close is reported', async () => {
    const ws = new WebSocket(srv.url, { perMessageDeflate: false });
    await once(ws, 'open');
    const seen = await srv.next();
    seen.transport.close(4001, 'going away now');
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
    expect([code, reason.toString()]).toEqual([4001, 'going away now']);
    expect((await seen.closed).code).toBe(4001);
    // Nothing is sent after the close frame.
    seen.transport.send(Buffer.from('late'));
  });

  test('a client that goes away without a close frame is reported as 1006', async () => {
    const ws = new WebSocket(srv.url, { perMessageDeflate: false });
    await once(ws, 'open');
    const seen = await srv.next();
    ws.terminate();
    expect((await seen.closed).code).toBe(1006);
  });
});

describe('SocketWsTransport, against a hostile raw client', () => {
  test('an unmasked frame is answered with a close frame of 1002 and reported', async () => {
    const { head, socket, rest } = await rawUpgrade(srv.port, upgradeLines());
    expect(head).toContain('101');
    const seen = await srv.next();
    const chunks: Buffer[] = [rest];
    socket.on('data', (c: Buffer) => chunks.push(c));
    const ended = once(socket, 'end');
    socket.write(Buffer.from([0x82, 0x03, 0x61, 0x62, 0x63]));
    // kas ends its side after the close frame; the client ending its own closes the connection.
    await ended;
    socket.end();
    const closed = await seen.closed;
    expect(closed.code).toBe(1002);
    const answer = Buffer.concat(chunks);
    expect(answer[0]).toBe(0x88);
    expect(answer.readUInt16BE(2)).toBe(1002);
    expect(seen.messages).toHaveLength(0);
    socket.destroy();
  });

  test('a message declared longer than the limit is refused with 1009 before its bytes arrive', async () => {
    const { socket } = await rawUpgrade(srv.port, upgradeLines());
    const seen = await srv.next();
    // A masked binary frame header declaring 1 GiB, and no payload.
    const header = Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4]);
    socket.write(header);
    expect((await seen.closed).code).toBe(1009);
    socket.destroy();
  });

  test('bytes that came with the upgrade request are read as frames', async () => {
    const socket = net.connect(srv.port, '127.0.0.1');
    await once(socket, 'connect');
    const key = Buffer.from([9, 8, 7, 6]);
    const masked = Buffer.from('early').map((b, i) => b ^ key[i & 3]!);
    socket.write(Buffer.concat([Buffer.from(`${upgradeLines().join('\r\n')}\r\n\r\n`), Buffer.from([0x82, 0x85]), key, masked]));
    const seen = await srv.next();
    while (seen.messages.length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(seen.messages[0]!.toString()).toBe('early');
    socket.destroy();
  });
});
