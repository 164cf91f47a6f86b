import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { readAll } from '../../test/support/streams.js';
import { Session } from '../protocol/session.js';
import { dialTunnelWebSocket, tunnelSocketSettings, TunnelWebSocketServer, type TunnelSocketLimits } from './tunnel-websocket.js';
import type { MessageTransport } from '../protocol/transport.js';

const MiB = 1024 * 1024;

describe('tunnelSocketSettings', () => {
  test('defaults: messages up to a 1 MiB frame plus a margin, backpressure at 16 chunks of 64 KiB', () => {
    expect(tunnelSocketSettings({})).toEqual({ maxPayload: MiB + 64 * 1024, highWater: MiB });
  });

  test('follow the configured frame size and chunk size', () => {
    expect(tunnelSocketSettings({ limits: { maxFrameSize: 4 * MiB }, tuning: { chunkSize: 16 * 1024 } })).toEqual({ maxPayload: 4 * MiB + 64 * 1024, highWater: 256 * 1024 });
  });
});

/** A plain HTTP server whose upgrades go to a TunnelWebSocketServer, or are refused with `refuseWith`. */
async function acceptingServer(limits: TunnelSocketLimits, refuseWith?: number) {
  const wss = new TunnelWebSocketServer(limits);
  const server = http.createServer();
  const transports: MessageTransport[] = [];
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (refuseWith) {
      socket.end(`HTTP/1.1 ${refuseWith} No\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.accept(req, socket, head, (t) => transports.push(t));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    url,
    transports,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('accepting and dialing tunnel WebSockets', () => {
  const limits: TunnelSocketLimits = { limits: { maxFrameSize: 64 * 1024, maxHeaderSize: 16 * 1024 } };

  test('a session runs over a dialed and an accepted socket, without compression', async () => {
    const srv = await acceptingServer(limits);
    try {
      const { ws, transport } = await dialTunnelWebSocket(srv.url, { ...limits, headers: { Authorization: 'Bearer t' }, handshakeTimeoutMs: 2000, refused: (s) => new Error(`refused ${s}`) });
      expect(ws.extensions).toBe('');
      const client = new Session(transport, { role: 'client', ...limits });
      while (srv.transports.length === 0) await new Promise<void>((r) => setImmediate(r));
      const server = new Session(srv.transports[0]!, { role: 'server', ...limits });
      server.on('stream', (s) => {
        s.reply({ ok: true });
        s.end('pong');
      });
      await client.ready;
      const stream = client.openStream({ t: 'ping' }, { end: true });
      expect((await readAll(stream)).toString()).toBe('pong');
      client.close();
      server.close();
    } finally {
      await srv.close();
    }
  });

  test('the accepting side refuses a message far above the frame size at the WebSocket layer (1009), before buffering it', async () => {
    const srv = await acceptingServer(limits);
    try {
      const raw = new WebSocket(srv.url, { perMessageDeflate: false });
      await once(raw, 'open');
      raw.send(Buffer.alloc(64 * 1024 + 64 * 1024 + 1));
      const [code] = (await once(raw, 'close')) as [number];
      expect(code).toBe(1009);
    } finally {
      await srv.close();
    }
  });

  test('the dialing side refuses such a message too', async () => {
    const server = http.createServer();
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
    // The close code the dialing side sends when the oversized message comes.
    const closed = new Promise<number>((resolve) => {
      server.on('upgrade', (req, socket: Duplex, head: Buffer) =>
        wss.handleUpgrade(req, socket, head, (ws) => {
          ws.on('close', (code: number) => resolve(code));
          ws.send(Buffer.alloc(256 * 1024));
        }),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      await dialTunnelWebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`, { ...limits, headers: {}, handshakeTimeoutMs: 2000, refused: (s) => new Error(`refused ${s}`) });
      expect(await closed).toBe(1009);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test('a refused upgrade rejects with the caller\'s error carrying the status', async () => {
    const srv = await acceptingServer(limits, 401);
    try {
      await expect(dialTunnelWebSocket(srv.url, { headers: {}, handshakeTimeoutMs: 2000, refused: (s) => new Error(`refused with ${s}`) })).rejects.toThrow('refused with 401');
    } finally {
      await srv.close();
    }
  });
});
