/**
 * A plain `http://` request sent to the TLS proxy listener: instead of dropping the connection (the
 * TLS handshake fails on "GET / HTTP/1.1"), answer 400 as the Kubernetes API server (Go's net/http)
 * does, so the user sees what is wrong. The first byte of a new connection tells: a TLS handshake
 * starts with a handshake record (0x16), an HTTP request with an upper-case method name.
 */
import type { Socket } from 'node:net';
import type tls from 'node:tls';

const ANSWER = 'Client sent an HTTP request to an HTTPS server.\n';
const RESPONSE = `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${ANSWER.length}\r\nConnection: close\r\n\r\n${ANSWER}`;

/** An HTTP method starts with an upper-case letter; a TLS handshake record with 0x16. */
function looksLikeHttp(firstByte: number): boolean {
  return firstByte >= 0x41 && firstByte <= 0x5a;
}

/**
 * Puts a look at the first bytes of each connection in front of the TLS server's own handling.
 * TLS connections go on untouched: the bytes read are put back and the TLS layer takes them from
 * the socket's buffer (no copy). A connection that sends nothing within `timeoutMs` is closed, as
 * the TLS handshake timeout would have.
 */
export function answerPlainHttp(server: tls.Server, timeoutMs: number): void {
  const tlsHandlers = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    const onError = (): void => {
      socket.destroy();
    };
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    timer.unref();
    socket.on('error', onError);
    socket.once('close', () => clearTimeout(timer));
    socket.once('readable', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      const first = socket.read() as Buffer | null;
      if (first === null) {
        socket.destroy();
        return;
      }
      if (looksLikeHttp(first[0]!)) {
        socket.on('error', () => undefined);
        socket.end(RESPONSE);
        setTimeout(() => socket.destroy(), 1000).unref();
        return;
      }
      socket.unshift(first);
      for (const handle of tlsHandlers) handle.call(server, socket);
    });
  });
}
