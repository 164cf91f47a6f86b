/**
 * A listener's certificate and key, followed while kas runs: cert-manager and the kubelet replace
 * the files of a Secret volume in place. A valid new pair is put into the listener's server for new
 * connections (live ones keep the certificate they were opened with); an invalid one keeps the pair
 * in use, logs a warning naming the keys and counts `kas_tls_reload_errors_total{listener}`.
 */
import tls from 'node:tls';
import { Counter, type Registry } from 'prom-client';
import { FileReloader } from '../../shared/file-reloader.js';
import type { Logger } from '../../shared/logger.js';
import type { ListenerName } from '../module.js';
import { checkTlsPair, readTlsFiles, type TlsFiles, type TlsPair } from './tls-files.js';

/** How often the files' stat is checked besides watch events (the kubelet updates a volume within ~1 min). */
export const TLS_POLL_MS = 10_000;

/** A listener's TLS: the pair to start with, then every valid new pair. */
export interface ListenerTls {
  /** The pair in use now. */
  readonly current: TlsPair;
  /**
   * A secure context of the pair in use now, for code that makes TLS sockets itself (a listener
   * that looks at the first byte before TLS): read it per connection.
   */
  readonly secureContext: tls.SecureContext;
  /** Follows the files from now on, putting each valid new pair into `server` (its new connections). */
  follow(server: tls.Server): void;
  /** Stops following the files. */
  close(): void;
}

interface TlsReloadCounters {
  reloads: Counter<'listener'>;
  errors: Counter<'listener'>;
}

/** The counters, shared by every listener of one registry (prom-client allows one metric per name). */
function counters(registry: Registry): TlsReloadCounters {
  const existing = (name: string) => registry.getSingleMetric(name) as Counter<'listener'> | undefined;
  return {
    reloads:
      existing('kas_tls_reloads_total') ??
      new Counter({ name: 'kas_tls_reloads_total', help: 'Certificate and key files reloaded after they changed, by listener.', labelNames: ['listener'], registers: [registry] }),
    errors:
      existing('kas_tls_reload_errors_total') ??
      new Counter({ name: 'kas_tls_reload_errors_total', help: 'Changed certificate or key files that were not usable (the previous pair was kept), by listener.', labelNames: ['listener'], registers: [registry] }),
  };
}

export interface ListenerTlsOptions {
  listener: ListenerName;
  /** The configuration section of the files, e.g. `agent.listen` (named in errors). */
  keyPrefix: string;
  files: TlsFiles;
  metrics: Registry;
  logger: Logger;
  pollMs?: number;
}

/** Reads the pair (a ConfigError when it is unusable now), or null when the listener has no TLS. */
export function listenerTls(options: ListenerTlsOptions): ListenerTls | null {
  const initial = readTlsFiles(options.keyPrefix, options.files);
  if (!initial) return null;
  const { listener, keyPrefix } = options;
  const { reloads, errors } = counters(options.metrics);
  reloads.inc({ listener }, 0);
  errors.inc({ listener }, 0);
  let server: tls.Server | null = null;
  let context = { pair: initial, secureContext: tls.createSecureContext({ cert: initial.cert, key: initial.key }) };
  const reloader = new FileReloader<TlsPair>({
    paths: [options.files.certificate_file!, options.files.key_file!],
    initial,
    initialContents: [initial.cert, initial.key],
    load: ([cert, key]) => checkTlsPair(keyPrefix, { cert: cert!, key: key! }),
    onReload: (pair) => {
      server?.setSecureContext({ cert: pair.cert, key: pair.key });
      reloads.inc({ listener });
    },
    onError: () => errors.inc({ listener }),
    logger: options.logger.child({ listener }),
    what: `${keyPrefix} certificate and key`,
    pollMs: options.pollMs ?? TLS_POLL_MS,
  });
  return {
    get current() {
      return reloader.current;
    },
    get secureContext() {
      const pair = reloader.current;
      if (context.pair !== pair) context = { pair, secureContext: tls.createSecureContext({ cert: pair.cert, key: pair.key }) };
      return context.secureContext;
    },
    follow(s) {
      server = s;
      reloader.start();
    },
    close() {
      reloader.close();
      server = null;
    },
  };
}
