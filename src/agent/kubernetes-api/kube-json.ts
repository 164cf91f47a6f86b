/**
 * A small JSON client over agentk's ApiServerClient, for agentk's own requests to its API server
 * (leader election, GitOps apply): one request, a bounded answer body parsed as JSON. Not for
 * watches (streaming bodies) and not for proxied requests (kubernetes-api forwards those as bytes).
 *
 *   const kube = new KubeJson(client);
 *   const res = await kube.request('GET', '/api/v1/namespaces/default/configmaps/x');
 *   if (res.status === 404) ...
 */
import type { ApiServerClient } from './api-server.js';

export interface KubeResponse {
  status: number;
  /** The body parsed as JSON (null when it is empty or not JSON). */
  json: unknown;
  /** The raw body, as text (bounded), for error messages. */
  text: string;
}

export interface KubeRequestOptions {
  /** Content-Type of the body (default application/json). */
  contentType?: string;
  /** Aborts the request. */
  signal?: AbortSignal;
  /** Gives up after this long, ms (default 30 s). */
  timeoutMs?: number;
  /** Accept header (default application/json). */
  accept?: string;
}

/** Largest answer body read (list answers of a large namespace are the big ones). */
export const MAX_KUBE_RESPONSE_BYTES = 64 * 1024 * 1024;

export class KubeJson {
  constructor(private readonly client: ApiServerClient) {}

  /** Sends one request (body as JSON unless a Buffer/string), resolves with status and parsed body. Rejects on transport errors. */
  async request(method: string, path: string, body?: unknown, options: KubeRequestOptions = {}): Promise<KubeResponse> {
    const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? Buffer.from(body) : Buffer.from(JSON.stringify(body));
    const headers = ['Accept', options.accept ?? 'application/json'];
    if (payload) headers.push('Content-Type', options.contentType ?? 'application/json', 'Content-Length', String(payload.byteLength));
    const requestOptions = await this.client.requestOptions(method, path, headers);
    const timeoutMs = options.timeoutMs ?? 30_000;
    return new Promise<KubeResponse>((resolve, reject) => {
      const signal = options.signal;
      if (signal?.aborted) {
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
        return;
      }
      const req = this.client.request({ ...requestOptions, timeout: timeoutMs });
      const onAbort = () => req.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => signal?.removeEventListener('abort', onAbort);
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
      req.on('error', (err) => {
        done();
        reject(err);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.byteLength;
          if (size > MAX_KUBE_RESPONSE_BYTES) req.destroy(new Error(`${method} ${path}: answer larger than ${MAX_KUBE_RESPONSE_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.on('error', (err) => {
          done();
          reject(err);
        });
        res.on('end', () => {
          done();
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = null;
          if (text !== '') {
            try {
              json = JSON.parse(text);
            } catch {
              json = null;
            }
          }
          resolve({ status: res.statusCode ?? 0, json, text: text.length > 4096 ? `${text.slice(0, 4096)}…` : text });
        });
      });
      req.end(payload);
    });
  }
}

/** The `message` of a Kubernetes Status answer, else the status code and the start of the body. */
export function kubeErrorMessage(res: KubeResponse): string {
  const message = (res.json as { message?: unknown } | null)?.message;
  if (typeof message === 'string' && message !== '') return `${res.status}: ${message}`;
  return `${res.status}: ${res.text.slice(0, 300)}`;
}
