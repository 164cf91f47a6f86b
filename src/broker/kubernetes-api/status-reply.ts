/**
 * The body of an error kas answers itself, in a form the asking client shows. Most clients decode a
 * JSON `Status`. client-go's discovery and raw requests do not: for an error they show the body only
 * when it is text, else the message "unknown" (newer kubectl's aggregated discovery asks for
 * `application/json;g=apidiscovery.k8s.io;...`). Those get the Status message as text/plain.
 */
import { kubernetesStatusBody } from '../../shared/k8s-status.js';

export interface StatusReply {
  contentType: string;
  body: Buffer;
}

/** True when the Accept header is client-go's aggregated discovery (its errors are read raw). */
export function readsErrorsRaw(accept: string | undefined): boolean {
  return accept !== undefined && accept.includes('g=apidiscovery.k8s.io');
}

export function statusReply(accept: string | undefined, code: number, message: string): StatusReply {
  if (readsErrorsRaw(accept)) return { contentType: 'text/plain; charset=utf-8', body: Buffer.from(`${message}\n`) };
  return { contentType: 'application/json', body: kubernetesStatusBody(code, message) };
}
