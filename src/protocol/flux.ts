/**
 * The Flux git-push feature on the wire: agentk opens one long-lived `flux_git_push` stream towards
 * kas and sends, as messages in the stream's data, the list of GitLab projects whose pushes its
 * Flux GitRepositories follow (the whole list each time it changes). kas answers each list with what
 * it accepted and refused, sends one message per git push of an accepted project, and a heartbeat
 * every `heartbeatMs` (given in its REPLY head) so agentk can tell a stalled stream from a quiet
 * one. docs/protocol.md ("Flux git-push streams") is the normative description.
 *
 * Each message is a 4-byte big-endian length followed by that many bytes of a UTF-8 JSON object.
 * Everything the peer sends is checked here: sizes, shapes, project paths.
 */
import { TunnelError } from './errors.js';
import type { Head } from './frames.js';

/** Stream type tag of Flux git-push streams (`t` in the OPEN head). */
export const FLUX_GIT_PUSH_STREAM = 'flux_git_push';

/** Largest message (JSON bytes after the length prefix) either side accepts. */
export const MAX_FLUX_MESSAGE_BYTES = 1024 * 1024;

/** Most projects one subscription list may name (kas may allow fewer: its configuration). */
export const MAX_FLUX_PROJECTS = 5000;

/** Longest project path (GitLab's full_path). */
export const MAX_FLUX_PROJECT_PATH_LENGTH = 1024;

/** Longest refusal reason in a `subscribed` message. */
export const MAX_FLUX_REASON_LENGTH = 512;

/** Bounds of the heartbeat interval kas announces. */
export const MIN_FLUX_HEARTBEAT_MS = 100;
export const MAX_FLUX_HEARTBEAT_MS = 10 * 60 * 1000;

/** agentk → kas: the whole list of projects it follows now (replaces the previous list). */
export interface FluxSubscribe {
  type: 'subscribe';
  projects: string[];
}

/** kas → agentk: the answer to a `subscribe`. */
export interface FluxSubscribed {
  type: 'subscribed';
  accepted: string[];
  refused: Array<{ project: string; reason: string }>;
}

/** kas → agentk: a push to a followed project (the path as agentk subscribed it). */
export interface FluxPush {
  type: 'push';
  project: string;
}

/** kas → agentk: the stream is alive. */
export interface FluxHeartbeat {
  type: 'heartbeat';
}

export type FluxDownMessage = FluxSubscribed | FluxPush | FluxHeartbeat;

/** kas's REPLY head: how often it sends heartbeats. */
export interface FluxReplyHead {
  heartbeatMs: number;
}

function bad(message: string): TunnelError {
  return new TunnelError('PROTOCOL_ERROR', `invalid flux_git_push message: ${message}`);
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Whether `path` is a project path as GitLab writes one: at least two segments separated by `/`,
 * each of letters, digits, `_`, `-`, `.` (not starting with `.` or `-`, and no `.git`/`.atom` end),
 * no empty segment. Paths are compared case-insensitively (GitLab's routes are).
 */
export function isProjectPath(path: unknown): path is string {
  if (typeof path !== 'string' || path.length === 0 || path.length > MAX_FLUX_PROJECT_PATH_LENGTH) return false;
  const segments = path.split('/');
  if (segments.length < 2) return false;
  return segments.every((s) => /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(s) && !/\.(git|atom)$/i.test(s));
}

/** The form under which two project paths are the same project. */
export function projectKey(path: string): string {
  return path.toLowerCase();
}

export function encodeFluxOpenHead(): Head {
  return { t: FLUX_GIT_PUSH_STREAM };
}

export function encodeFluxReplyHead(h: FluxReplyHead): Head {
  return { heartbeatMs: h.heartbeatMs };
}

/** Validates kas's REPLY head. Throws TunnelError PROTOCOL_ERROR naming what is wrong. */
export function decodeFluxReplyHead(head: Head): FluxReplyHead {
  const ms = head.heartbeatMs;
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < MIN_FLUX_HEARTBEAT_MS || ms > MAX_FLUX_HEARTBEAT_MS) {
    throw bad(`heartbeatMs must be an integer in [${MIN_FLUX_HEARTBEAT_MS}, ${MAX_FLUX_HEARTBEAT_MS}]`);
  }
  return { heartbeatMs: ms };
}

/** One message as stream data: length prefix and JSON. */
export function encodeFluxMessage(message: FluxSubscribe | FluxDownMessage): Buffer {
  const json = Buffer.from(JSON.stringify(message), 'utf8');
  if (json.byteLength > MAX_FLUX_MESSAGE_BYTES) throw bad(`the message is ${json.byteLength} bytes; the limit is ${MAX_FLUX_MESSAGE_BYTES}`);
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(json.byteLength, 0);
  return Buffer.concat([prefix, json]);
}

/**
 * Cuts stream data into messages. Holds at most one incomplete message (bounded by
 * MAX_FLUX_MESSAGE_BYTES); a larger announced length throws before anything is buffered.
 */
export class FluxMessageReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Adds data; returns the JSON values of the messages it completed. Throws TunnelError PROTOCOL_ERROR. */
  push(chunk: Buffer): unknown[] {
    this.chunks.push(chunk);
    this.buffered += chunk.byteLength;
    const out: unknown[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      this.chunks = [all];
      const length = all.readUInt32BE(0);
      if (length > MAX_FLUX_MESSAGE_BYTES) throw bad(`a message announces ${length} bytes; the limit is ${MAX_FLUX_MESSAGE_BYTES}`);
      if (all.byteLength < 4 + length) break;
      const body = all.subarray(4, 4 + length);
      const rest = all.subarray(4 + length);
      this.chunks = rest.byteLength > 0 ? [rest] : [];
      this.buffered = rest.byteLength;
      let value: unknown;
      try {
        value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
      } catch {
        throw bad('a message is not UTF-8 JSON');
      }
      out.push(value);
    }
    return out;
  }

  /** Bytes of an incomplete message held. */
  get pending(): number {
    return this.buffered;
  }
}

/**
 * Checks a message agentk sent (kas side). `maxProjects` is kas's own bound (at most
 * MAX_FLUX_PROJECTS). Duplicates (case-insensitive) are dropped. Throws TunnelError PROTOCOL_ERROR.
 */
export function decodeFluxSubscribe(value: unknown, maxProjects = MAX_FLUX_PROJECTS): FluxSubscribe {
  if (!isMap(value)) throw bad('a message must be a JSON object');
  if (value.type !== 'subscribe') throw bad('agentk may only send messages of type "subscribe"');
  const projects = value.projects;
  if (!Array.isArray(projects)) throw bad('projects must be an array');
  const limit = Math.min(maxProjects, MAX_FLUX_PROJECTS);
  if (projects.length > limit) throw bad(`projects names ${projects.length} projects; the limit is ${limit}`);
  const seen = new Set<string>();
  const unique: string[] = [];
  for (const p of projects) {
    if (!isProjectPath(p)) throw bad(`projects holds ${JSON.stringify(typeof p === 'string' ? p.slice(0, 80) : typeof p)}, which is not a project path (group/project)`);
    const key = projectKey(p);
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push(p);
  }
  return { type: 'subscribe', projects: unique };
}

/** Checks a message kas sent (agentk side). Throws TunnelError PROTOCOL_ERROR. */
export function decodeFluxDownMessage(value: unknown): FluxDownMessage {
  if (!isMap(value)) throw bad('a message must be a JSON object');
  switch (value.type) {
    case 'heartbeat':
      return { type: 'heartbeat' };
    case 'push':
      if (!isProjectPath(value.project)) throw bad('push.project must be a project path');
      return { type: 'push', project: value.project };
    case 'subscribed': {
      const { accepted, refused } = value;
      if (!Array.isArray(accepted) || accepted.length > MAX_FLUX_PROJECTS || !accepted.every(isProjectPath)) throw bad(`subscribed.accepted must be at most ${MAX_FLUX_PROJECTS} project paths`);
      if (!Array.isArray(refused) || refused.length > MAX_FLUX_PROJECTS) throw bad(`subscribed.refused must be an array of at most ${MAX_FLUX_PROJECTS} entries`);
      const out: FluxSubscribed['refused'] = [];
      for (const r of refused) {
        if (!isMap(r) || !isProjectPath(r.project) || typeof r.reason !== 'string' || r.reason.length > MAX_FLUX_REASON_LENGTH) {
          throw bad(`subscribed.refused entries must be {project, reason} with a reason of at most ${MAX_FLUX_REASON_LENGTH} characters`);
        }
        out.push({ project: r.project, reason: r.reason });
      }
      return { type: 'subscribed', accepted: accepted as string[], refused: out };
    }
    default:
      throw bad('type must be one of "subscribed", "push", "heartbeat"');
  }
}
