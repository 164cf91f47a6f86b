/**
 * Which failed soak requests a fault explains. A failure is explained when its request overlapped a
 * fault's window (from the fault's start to `settleMs` after it ended, i.e. after the agent was back,
 * the replica listened again or Redis answered again) AND its kind is one that fault can cause, for
 * the agent the fault hit (or any agent, for faults of kas or Redis). Everything else is unexplained.
 */

/** The faults the soak injects. */
export type FaultKind = 'agent-kill' | 'kas-restart' | 'redis-restart' | 'link-cut';

export const FAULT_KINDS: readonly FaultKind[] = ['agent-kill', 'kas-restart', 'redis-restart', 'link-cut'];

/** One injected fault, from its start until the system was whole again. */
export interface FaultWindow {
  kind: FaultKind;
  /** Date.now() when the fault began. */
  start: number;
  /** Date.now() when it was over (agent connected again, replica listening, Redis answering); null while running. */
  end: number | null;
  /** The agent it hit (agent-kill, link-cut); undefined for faults every agent sees. */
  agentId?: number;
  /** What was done, for the printout. */
  detail: string;
  /** Set when the system did not recover within the fault's time limit: a problem in itself. */
  problem?: string;
}

/**
 * What went wrong with one request:
 * - `status`: an answer other than the expected one (`code` set);
 * - `truncated`: the response ended before its end (connection cut mid-body);
 * - `watch-cut`: a watch closed before the client closed it;
 * - `watch-no-event`: a watch open for a while without one event;
 * - `client-error`: the client's request failed (`code`: ECONNRESET, socket hang up, ...);
 * - `body-mismatch`: a 200 with the wrong body;
 * - `hung`: no end within the soak's request timeout.
 */
export type FailureKind = 'status' | 'truncated' | 'watch-cut' | 'watch-no-event' | 'client-error' | 'body-mismatch' | 'hung';

/** One failed request. */
export interface Failure {
  op: string;
  agentId: number;
  start: number;
  end: number;
  kind: FailureKind;
  /** HTTP status for `status`, error code for `client-error`. */
  code?: string;
  /** The start of the response body or the error message, for samples. */
  detail: string;
}

/** Kinds of failure a fault can cause. */
const AGENT_SIDE: ReadonlySet<FailureKind> = new Set(['truncated', 'watch-cut', 'watch-no-event']);
const GATEWAY_STATUS = new Set(['502', '503', '504']);

/** True when `fault` can cause `failure` (ignoring time). */
export function canExplain(fault: FaultWindow, failure: Failure): boolean {
  switch (fault.kind) {
    case 'agent-kill':
    case 'link-cut':
      // The agent's tunnels went away: its streams were reset, and requests waiting for it may time
      // out. The clients' connections to kas are not touched.
      if (failure.agentId !== fault.agentId) return false;
      return AGENT_SIDE.has(failure.kind) || (failure.kind === 'status' && GATEWAY_STATUS.has(failure.code ?? ''));
    case 'kas-restart':
      // A replica drained and went: its clients' keep-alive connections closed (a request can race
      // the close), and tunnels held there ended for every agent.
      return AGENT_SIDE.has(failure.kind) || failure.kind === 'client-error' || (failure.kind === 'status' && GATEWAY_STATUS.has(failure.code ?? ''));
    case 'redis-restart':
      // Without Redis a replica cannot find agents held by others: a request there may wait for its
      // agent and be answered 5xx. No connection carries data through Redis, so nothing is cut.
      return failure.kind === 'status' && GATEWAY_STATUS.has(failure.code ?? '');
  }
}

/**
 * The fault that explains `failure`, or null when none does. When several could (windows overlap by
 * their settle time), the one that began last before the failure ended is named: the freshest cause.
 */
export function explain(failure: Failure, faults: readonly FaultWindow[], settleMs: number, now = Date.now()): FaultWindow | null {
  let best: FaultWindow | null = null;
  for (const fault of faults) {
    const until = (fault.end ?? now) + settleMs;
    const overlaps = failure.start <= until && failure.end >= fault.start;
    if (overlaps && canExplain(fault, failure) && (!best || fault.start > best.start)) best = fault;
  }
  return best;
}
