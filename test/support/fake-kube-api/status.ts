/** Kubernetes `Status` failures of the fake API server, and the error that carries one to the response. */

export interface StatusBody {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: { name?: string; kind?: string; uid?: string };
  code: number;
}

const REASONS: Record<number, string> = { 400: 'BadRequest', 401: 'Unauthorized', 404: 'NotFound', 405: 'MethodNotAllowed', 406: 'NotAcceptable', 409: 'AlreadyExists', 415: 'UnsupportedMediaType', 422: 'Invalid', 500: 'InternalError' };

export function failure(code: number, message: string, details?: StatusBody['details']): StatusBody {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: REASONS[code] ?? 'BadRequest', ...(details ? { details } : {}), code };
}

export class HttpError extends Error {
  constructor(readonly status: StatusBody) {
    super(status.message);
  }
}

export function notFound(resource: string, name: string): HttpError {
  return new HttpError(failure(404, `${resource} "${name}" not found`, { name, kind: resource }));
}
