/** The Kubernetes API proxy's listener and how it finds an agent. */
import { z } from 'zod';
import { configPart, type ConfigOf } from '../configuration/config-part.js';
import { address, duration, size, tlsFiles, tlsPair } from '../configuration/fields.js';

export const kubernetesApiConfig = configPart('agent.kubernetes_api', {
  listen: z
    .strictObject({ address: address('0.0.0.0:8154'), ...tlsFiles, headers_timeout: duration('30s') })
    .prefault({})
    .superRefine(tlsPair),
  url_path_prefix: z
    .string()
    .default('/')
    .refine((p) => p.startsWith('/'), { message: 'expected a path starting with "/"' }),
  agent_wait_timeout: duration('20s'),
  max_request_body_size: size(64 * 1024 * 1024, 1024, Number.MAX_SAFE_INTEGER),
}, `listen:
  address: 0.0.0.0:8154
  # certificate_file: /etc/kas/proxy.crt    # with key_file: HTTPS (kubectl sends no token over plain HTTP)
  # key_file: /etc/kas/proxy.key
  headers_timeout: 30s
url_path_prefix: /
agent_wait_timeout: 20s
max_request_body_size: 67108864    # bytes (64 MiB); a larger request body gets 413 (upgrades are not bodies)`);

export type KubernetesApiConfig = ConfigOf<[typeof kubernetesApiConfig]>['agent']['kubernetes_api'];
