/**
 * The Status answers agentk makes itself (a refused request, an unreachable API server): a REPLY
 * head and a Kubernetes `Status` body, which kubectl prints well. docs/protocol.md ("Failures")
 * fixes the headers.
 */
import type { Head } from '../../protocol/frames.js';
import { encodeResponseHead } from '../../protocol/http.js';
import { kubernetesStatusBody } from '../../shared/k8s-status.js';

export function statusReply(code: number, message: string): { head: Head; body: Buffer } {
  const body = kubernetesStatusBody(code, message);
  const head = encodeResponseHead({
    status: code,
    headers: [
      ['Content-Type', 'application/json'],
      ['Content-Length', String(body.byteLength)],
      ['Cache-Control', 'no-cache, private'],
    ],
  });
  return { head, body };
}
