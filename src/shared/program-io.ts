/**
 * What kas's and agentk's command lines write to and listen on, so a test can run either program
 * in-process: output streams, the log destination, and the shutdown signal.
 */
export interface ProgramIo {
  /** Where --help (and --version) go. */
  stdout: NodeJS.WritableStream;
  /** Where flag and configuration errors go. */
  stderr: NodeJS.WritableStream;
  /** The log destination (default: stdout). */
  logDestination?: NodeJS.WritableStream;
  /** Calls `handler` on each shutdown request; returns a function that stops listening. Default: SIGTERM and SIGINT. */
  onShutdownSignal?: (handler: (signal: string) => void) => () => void;
}

/** The default shutdown signal: SIGTERM and SIGINT of this process. */
export function processSignals(handler: (signal: string) => void): () => void {
  const signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];
  for (const s of signals) process.on(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}
