import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { Session } from '../protocol/session.js';
import { runSessionSuite, type PairOptions } from '../protocol/testing/session-suite.js';
import { generateSelfSignedCertificate, type CertificatePair } from './tls-cert.js';
import { TunnelWebSocketServer } from './tunnel-websocket.js';
import { WsTransport } from './ws-transport.js';

let cert: CertificatePair;
beforeAll(async () => {
  cert = await generateSelfSignedCertificate();
});

/**
 * `direct`: the transports get the raw sockets, so raw DATA frames are framed and masked by
 * WsTransport itself. `accepted`: the server side is kas's, TunnelWebSocketServer answering the
 * handshake and SocketWsTransport reading and writing frames on the socket (the client stays ws).
 */
function wsPair(tls: boolean, direct = false, kasAccepts = false) {
  return async (options: PairOptions = {}) => {
    const wss = new WebSocketServer({ noServer: true, maxPayload: 2 * 1024 * 1024, perMessageDeflate: false });
    const tunnelServer = new TunnelWebSocketServer({ limits: { maxFrameSize: 2 * 1024 * 1024 } });
    const server = tls ? https.createServer({ cert: cert.cert, key: cert.key }) : http.createServer();
    let serverSession!: Session;
    const accepted = new Promise<void>((resolve) => {
      server.on('upgrade', (req, socket: Duplex, head) => {
        if (kasAccepts) {
          tunnelServer.accept(req, socket, head, (transport) => {
            serverSession = new Session(transport, { role: 'server', ...options.server });
            resolve();
          });
          return;
        }
        wss.handleUpgrade(req, socket, head, (ws) => {
          serverSession = new Session(new WsTransport(ws, direct ? { socket: socket as Socket } : {}), { role: 'server', ...options.server });
          resolve();
        });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const ws = new WebSocket(`${tls ? 'wss' : 'ws'}://127.0.0.1:${port}/`, { perMessageDeflate: false, maxPayload: 2 * 1024 * 1024, ca: tls ? cert.cert : undefined });
    let clientSocket: Socket | undefined;
    ws.once('upgrade', (res) => {
      clientSocket = res.socket as Socket;
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const client = new Session(new WsTransport(ws, direct ? { socket: clientSocket } : {}), { role: 'client', ...options.client });
    await accepted;
    return {
      client,
      server: serverSession,
      async cleanup() {
        client.close();
        serverSession.close();
        for (const c of wss.clients) c.terminate();
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      },
    };
  };
}

runSessionSuite('a real ws connection on loopback', wsPair(false));
runSessionSuite('a real wss (TLS) connection on loopback', wsPair(true));
runSessionSuite('a real ws connection whose transports write raw DATA frames to the socket themselves', wsPair(false, true));
runSessionSuite('a real wss connection whose transports write raw DATA frames to the socket themselves', wsPair(true, true));
runSessionSuite('a real ws connection accepted by kas (frames read and written on the socket, no ws object)', wsPair(false, true, true));
runSessionSuite('a real wss connection accepted by kas (frames read and written on the socket, no ws object)', wsPair(true, true, true));
