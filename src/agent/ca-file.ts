/**
 * A CA bundle file agentk trusts, followed while it runs: the kas CA (--kas-ca-cert-file) and the
 * API server's (the service account's ca.crt, a kubeconfig's certificate-authority). New connections
 * use the current bundle; a changed file that holds no usable certificate keeps the previous one,
 * logs a warning naming where the file came from and counts `agentk_tls_reload_errors_total{file}`.
 */
import { FileReloader } from '../shared/file-reloader.js';
import type { Logger } from '../shared/logger.js';
import { checkCaBundle } from '../shared/tls-check.js';
import type { AgentMetrics } from './observability/metrics.js';

/** Which CA file, as the `file` label of the reload metrics. */
export type CaFileName = 'kas_ca' | 'api_server_ca';

/** How often the file's stat is checked besides watch events (the kubelet updates a volume within ~1 min). */
export const CA_POLL_MS = 10_000;

export interface CaFileOptions {
  file: CaFileName;
  path: string;
  /** Where the path came from, in log lines and errors (a flag, "kubeconfig certificate-authority"). */
  source: string;
  /** The bundle as read at start (already checked there). */
  initial: Buffer;
  metrics: AgentMetrics;
  logger: Logger;
  pollMs?: number;
}

/** Follows a CA file once `start()` is called; `current` is the bundle for the next connection. */
export function followCaFile(options: CaFileOptions): FileReloader<Buffer> {
  const { file, metrics, source, path } = options;
  metrics.tlsReloads.inc({ file }, 0);
  metrics.tlsReloadErrors.inc({ file }, 0);
  return new FileReloader<Buffer>({
    paths: [path],
    initial: options.initial,
    initialContents: [options.initial],
    load: ([pem]) => {
      try {
        checkCaBundle(pem!);
      } catch (err) {
        throw new Error(`${source} ${path}: ${(err as Error).message}`, { cause: err });
      }
      return pem!;
    },
    onReload: () => metrics.tlsReloads.inc({ file }),
    onError: () => metrics.tlsReloadErrors.inc({ file }),
    logger: options.logger,
    what: `${source} CA certificate`,
    pollMs: options.pollMs ?? CA_POLL_MS,
  });
}
