/** Kubernetes `Status` error bodies: what kas and agentk answer when they fail a request themselves. */

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  413: 'RequestEntityTooLarge',
  429: 'TooManyRequests',
  500: 'InternalError',
  502: 'ServiceUnavailable',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export interface KubernetesStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: string;
  code: number;
}

export function kubernetesStatus(code: number, message: string): KubernetesStatus {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: REASONS[code] ?? (code >= 500 ? 'InternalError' : 'BadRequest'), code };
}

export function kubernetesStatusBody(code: number, message: string): Buffer {
  return Buffer.from(JSON.stringify(kubernetesStatus(code, message)));
}
