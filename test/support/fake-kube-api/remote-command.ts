/**
 * exec and port-forward of the fake API server's pod: the fake container's exec behaviour, shared by
 * the WebSocket and SPDY transports, and the port-forward echo.
 */
import { WebSocket } from 'ws';
import { SpdyServerSession } from './spdy.js';

export interface ExecParams {
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

interface ExecResult {
  exitCode: number;
}

export function execParams(url: URL): ExecParams {
  const flag = (name: string) => ['true', '1'].includes(url.searchParams.get(name) ?? '');
  return { command: url.searchParams.getAll('command'), stdin: flag('stdin'), stdout: flag('stdout'), stderr: flag('stderr'), tty: flag('tty') };
}

/**
 * Runs the fake command. `writeStdout` gets the output; the returned object takes stdin. `done` is called
 * once with the result.
 */
function runFakeCommand(params: ExecParams, writeStdout: (data: Buffer) => void, done: (result: ExecResult) => void): { stdin(data: Buffer): void; stdinClosed(): void } {
  let finished = false;
  const finish = (result: ExecResult) => {
    if (finished) return;
    finished = true;
    done(result);
  };
  const exit = params.command[0] === 'exit' ? Number.parseInt(params.command[1] ?? '0', 10) : undefined;
  if (exit !== undefined) {
    queueMicrotask(() => finish({ exitCode: Number.isNaN(exit) ? 1 : exit }));
  } else {
    writeStdout(Buffer.from(`${params.command.join(' ')}\n`));
    if (!params.stdin) queueMicrotask(() => finish({ exitCode: 0 }));
  }
  return {
    stdin: (data) => {
      if (!finished && params.stdin) writeStdout(data);
    },
    stdinClosed: () => finish({ exitCode: 0 }),
  };
}

/** The error-channel message: JSON Status for v4 and later, plain text (nothing on success) before. */
function execStatusMessage(result: ExecResult, command: string[], jsonStatus: boolean): Buffer | undefined {
  if (result.exitCode === 0) return jsonStatus ? Buffer.from(JSON.stringify({ metadata: {}, status: 'Success' })) : undefined;
  const message = `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${result.exitCode}`;
  if (!jsonStatus) return Buffer.from(message);
  return Buffer.from(
    JSON.stringify({ metadata: {}, status: 'Failure', message, reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: String(result.exitCode) }] } }),
  );
}

export const WS_EXEC_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];
export const WS_PORTFORWARD_PROTOCOLS = ['SPDY/3.1+portforward.k8s.io'];
export const SPDY_EXEC_PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];
export const SPDY_PORTFORWARD_PROTOCOLS = ['portforward.k8s.io'];

const CHANNEL_STDIN = 0;
const CHANNEL_STDOUT = 1;
const CHANNEL_ERROR = 3;
const CHANNEL_CLOSE = 255;

/** Exec over a WebSocket (`v5.channel.k8s.io` / `v4.channel.k8s.io`): one channel byte, then data. */
export function execOverWebSocket(ws: WebSocket, params: ExecParams): void {
  const send = (channel: number, data: Buffer) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.concat([Buffer.from([channel]), data]), { binary: true });
  };
  let command: ReturnType<typeof runFakeCommand> | undefined;
  const bufferedStdin: Array<Buffer | 'end'> = [];
  const stdin = (item: Buffer | 'end') => {
    if (!command) bufferedStdin.push(item);
    else if (item === 'end') command.stdinClosed();
    else command.stdin(item);
  };
  // The command starts a moment after the switch, as a kubelet's process does: kubectl's WebSocket
  // client discards output that arrives before it has set up its streams ("Unknown stream id 1").
  setTimeout(() => {
    command = runFakeCommand(
      params,
      (data) => {
        if (params.stdout) send(CHANNEL_STDOUT, data);
      },
      (result) => {
        send(CHANNEL_ERROR, execStatusMessage(result, params.command, true)!);
        if (ws.readyState === WebSocket.OPEN) ws.close(1000);
      },
    );
    for (const item of bufferedStdin.splice(0)) stdin(item);
  }, EXEC_START_DELAY_MS);
  ws.on('message', (message: Buffer, isBinary: boolean) => {
    if (!isBinary || message.length === 0) return;
    if (message[0] === CHANNEL_STDIN) stdin(message.subarray(1));
    else if (message[0] === CHANNEL_CLOSE && message[1] === CHANNEL_STDIN) stdin('end'); // v5 only
    // The resize channel (4) and the close signal for other channels are ignored.
  });
  // v4 has no close signal: stdin ends with the connection.
  ws.on('close', () => stdin('end'));
}

/** How long after the WebSocket switch the fake exec's command starts. */
const EXEC_START_DELAY_MS = 100;

/** Exec over SPDY/3.1: waits for the streams the query asks for (like the kubelet), then runs. */
export function execOverSpdy(write: (bytes: Buffer) => void, end: () => void, params: ExecParams, protocol: string): SpdyServerSession {
  const streams = new Map<string, number>();
  const versioned = /^v(\d+)\./.exec(protocol);
  const version = versioned ? Number(versioned[1]) : 1;
  const expected = 1 + (params.stdin ? 1 : 0) + (params.stdout ? 1 : 0) + (params.stderr ? 1 : 0) + (params.tty && version >= 3 ? 1 : 0);
  let command: ReturnType<typeof runFakeCommand> | undefined;
  const bufferedStdin: Array<Buffer | 'end'> = [];
  const session: SpdyServerSession = new SpdyServerSession(write, {
    onStream(id, headers) {
      const type = headers.get('streamtype')?.[0] ?? '';
      streams.set(type, id);
      if (streams.size < expected || command) return;
      command = runFakeCommand(
        params,
        (data) => {
          const stdout = streams.get('stdout');
          if (stdout !== undefined) session.sendData(stdout, data);
        },
        (result) => {
          for (const type of ['stdout', 'stderr']) {
            const id = streams.get(type);
            if (id !== undefined) session.sendData(id, Buffer.alloc(0), true);
          }
          const message = execStatusMessage(result, params.command, version >= 4);
          session.sendData(streams.get('error')!, message ?? Buffer.alloc(0), true);
          // The client resets its streams and closes the connection when it has read everything.
        },
      );
      for (const item of bufferedStdin.splice(0)) {
        if (item === 'end') command.stdinClosed();
        else command.stdin(item);
      }
    },
    onData(id, data, fin) {
      if (id !== streams.get('stdin')) return; // error-stream half-close, resize events: ignored
      if (data.length) {
        if (command) command.stdin(data);
        else bufferedStdin.push(data);
      }
      if (fin) {
        if (command) command.stdinClosed();
        else bufferedStdin.push('end');
      }
    },
    onReset() {},
    onGoAway: end,
    onProtocolError: end,
  });
  return session;
}

/** Port-forward over SPDY/3.1 (plain or tunnelled in a WebSocket): every port is an echo server. */
export function portForwardOverSpdy(write: (bytes: Buffer) => void, end: () => void): SpdyServerSession {
  const pairs = new Map<string, { error?: number; data?: number }>();
  const dataStreams = new Map<number, string>();
  const session: SpdyServerSession = new SpdyServerSession(write, {
    onStream(id, headers) {
      const type = headers.get('streamtype')?.[0];
      const requestId = headers.get('requestid')?.[0] ?? String(id);
      const pair = pairs.get(requestId) ?? {};
      pairs.set(requestId, pair);
      if (type === 'error') pair.error = id;
      else if (type === 'data') {
        pair.data = id;
        dataStreams.set(id, requestId);
      } else session.resetStream(id);
    },
    onData(id, data, fin) {
      const requestId = dataStreams.get(id);
      if (requestId === undefined) return; // the client half-closes the error stream: nothing to do
      if (data.length) session.sendData(id, data); // echo
      if (fin) {
        session.sendData(id, Buffer.alloc(0), true);
        const errorStream = pairs.get(requestId)?.error;
        if (errorStream !== undefined) session.sendData(errorStream, Buffer.alloc(0), true);
        pairs.delete(requestId);
        dataStreams.delete(id);
      }
    },
    onReset(id) {
      const requestId = dataStreams.get(id);
      if (requestId === undefined) return;
      const errorStream = pairs.get(requestId)?.error;
      if (errorStream !== undefined) session.sendData(errorStream, Buffer.alloc(0), true);
      pairs.delete(requestId);
      dataStreams.delete(id);
    },
    onGoAway: end,
    onProtocolError: end,
  });
  return session;
}
