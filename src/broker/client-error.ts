/**
 * What kas's HTTP listeners do with a request Node's parser refused: answer it with the status Node
 * itself would send (431 for headers beyond the size limit, 408 for a head not sent within the
 * headers timeout, 400 for anything malformed), then close. Nothing of the request is echoed back.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';

export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const untouched = (socket as Duplex & { bytesWritten?: number }).bytesWritten === 0;
  if (socket.writable && untouched) {
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    setTimeout(() => socket.destroy(), 1000).unref();
    return;
  }
  socket.destroy();
}
