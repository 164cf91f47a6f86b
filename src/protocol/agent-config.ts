/**
 * The agent configuration feature on the wire: kas opens an `agent_config` stream whose OPEN head
 * names the configuration's version, sends the configuration as JSON stream data and ends its
 * direction; agentk applies it and answers with a REPLY head saying whether it did, ending its own
 * direction. docs/protocol.md ("Agent configuration streams") is the normative description.
 */
import { TunnelError } from './errors.js';
import type { Head, WireValue } from './frames.js';

/** Stream type tag of agent configuration streams (`t` in the OPEN head). */
export const AGENT_CONFIG_STREAM = 'agent_config';

/** Largest configuration document (JSON bytes) agentk accepts. */
export const MAX_AGENT_CONFIG_BYTES = 1024 * 1024;

/** Longest version string in the head. */
export const MAX_AGENT_CONFIG_COMMIT_LENGTH = 256;

/** Longest error text in a REPLY head; longer ones are cut by the encoder. */
export const MAX_AGENT_CONFIG_ERROR_LENGTH = 1024;

/** The levels `observability.logging.level` may name. */
export const AGENT_LOG_LEVELS = ['info', 'debug', 'warn', 'error'] as const;
export type AgentLogLevel = (typeof AGENT_LOG_LEVELS)[number];

export interface AgentConfigHead {
  /**
   * Which version of the configuration file this is: the commit id in GitLab mode, `sha256:<hex>` of
   * the file in standalone mode; null when there is no file (the configuration is empty).
   */
  commit: string | null;
}

/**
 * The configuration as agentk sees it: the keys of `config.yaml` after kas validated it. Only the
 * sections agentk acts on are typed (and checked by the decoder); other sections pass through as
 * plain JSON values, so a kas that knows more keys never breaks an older agentk.
 */
export interface AgentConfigDocument {
  observability?: {
    logging?: {
      level?: AgentLogLevel;
      [key: string]: unknown;
    };
    [key: string]: unknown;
  };
  /**
   * The manifest projects agentk follows (the GitOps feature): kas validated the entries and filled
   * in each missing `id` with the configuration project's id (GitLab mode). agentk opens one
   * `gitops_manifests` stream per id (src/protocol/gitops.ts); kas sends the other keys' effect with
   * each snapshot.
   */
  gitops?: {
    manifest_projects?: Array<{ id?: string; [key: string]: unknown }>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

/** Most manifest projects of the `gitops` section. */
export const MAX_GITOPS_MANIFEST_PROJECTS = 100;
/** Longest manifest project id. */
export const MAX_GITOPS_PROJECT_ID_LENGTH = 1024;

export interface AgentConfigReply {
  /** True when agentk put the configuration in force. */
  applied: boolean;
  /** Why it did not (when applied is false); text meant for logs and users. */
  error?: string;
}

function bad(message: string): TunnelError {
  return new TunnelError('PROTOCOL_ERROR', `invalid agent configuration message: ${message}`);
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

export function encodeAgentConfigHead(h: AgentConfigHead): Head {
  return { t: AGENT_CONFIG_STREAM, commit: h.commit };
}

/** Validates kas's OPEN head. Throws TunnelError PROTOCOL_ERROR naming what is wrong. */
export function decodeAgentConfigHead(head: Head): AgentConfigHead {
  if (head.t !== AGENT_CONFIG_STREAM) throw bad(`stream type must be "${AGENT_CONFIG_STREAM}"`);
  const commit: WireValue | undefined = head.commit;
  if (commit === null || commit === undefined) return { commit: null };
  if (typeof commit !== 'string' || commit === '' || commit.length > MAX_AGENT_CONFIG_COMMIT_LENGTH) {
    throw bad(`commit must be nil or a non-empty string of at most ${MAX_AGENT_CONFIG_COMMIT_LENGTH} characters`);
  }
  return { commit };
}

/** The stream data kas sends: the document as UTF-8 JSON. */
export function encodeAgentConfigData(doc: AgentConfigDocument): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(doc));
  if (bytes.byteLength > MAX_AGENT_CONFIG_BYTES) throw bad(`the document is ${bytes.byteLength} bytes; the limit is ${MAX_AGENT_CONFIG_BYTES}`);
  return bytes;
}

/**
 * Decodes and checks the stream data: a JSON object, at most MAX_AGENT_CONFIG_BYTES, whose
 * `observability.logging.level` (when present) is one of AGENT_LOG_LEVELS. Throws TunnelError
 * PROTOCOL_ERROR naming what is wrong.
 */
export function decodeAgentConfigData(data: Uint8Array): AgentConfigDocument {
  if (data.byteLength > MAX_AGENT_CONFIG_BYTES) throw bad(`the document is ${data.byteLength} bytes; the limit is ${MAX_AGENT_CONFIG_BYTES}`);
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch {
    throw bad('the data must be a UTF-8 JSON document');
  }
  if (!isMap(doc)) throw bad('the document must be a JSON object');
  const observability = doc.observability;
  if (observability !== undefined) {
    if (!isMap(observability)) throw bad('observability must be an object');
    const logging = observability.logging;
    if (logging !== undefined) {
      if (!isMap(logging)) throw bad('observability.logging must be an object');
      const level = logging.level;
      if (level !== undefined && !(AGENT_LOG_LEVELS as readonly unknown[]).includes(level)) {
        throw bad(`observability.logging.level must be one of ${AGENT_LOG_LEVELS.join(', ')}`);
      }
    }
  }
  const gitops = doc.gitops;
  if (gitops !== undefined) {
    if (!isMap(gitops)) throw bad('gitops must be an object');
    const projects = gitops.manifest_projects;
    if (projects !== undefined) {
      if (!Array.isArray(projects) || projects.length > MAX_GITOPS_MANIFEST_PROJECTS) throw bad(`gitops.manifest_projects must be a list of at most ${MAX_GITOPS_MANIFEST_PROJECTS} entries`);
      projects.forEach((p: unknown, i) => {
        if (!isMap(p)) throw bad(`gitops.manifest_projects[${i}] must be an object`);
        const id = p.id;
        if (id !== undefined && (typeof id !== 'string' || id === '' || id.length > MAX_GITOPS_PROJECT_ID_LENGTH)) {
          throw bad(`gitops.manifest_projects[${i}].id must be a non-empty string of at most ${MAX_GITOPS_PROJECT_ID_LENGTH} characters`);
        }
      });
    }
  }
  return doc as AgentConfigDocument;
}

export function encodeAgentConfigReply(r: AgentConfigReply): Head {
  if (r.applied) return { applied: true };
  return { applied: false, error: (r.error ?? 'not applied').slice(0, MAX_AGENT_CONFIG_ERROR_LENGTH) };
}

/** Validates agentk's REPLY head. Throws TunnelError PROTOCOL_ERROR naming what is wrong. */
export function decodeAgentConfigReply(head: Head): AgentConfigReply {
  const { applied, error } = head;
  if (typeof applied !== 'boolean') throw bad('applied must be a boolean');
  if (applied) return { applied };
  if (error !== undefined && error !== null && (typeof error !== 'string' || error.length > MAX_AGENT_CONFIG_ERROR_LENGTH)) {
    throw bad(`error must be a string of at most ${MAX_AGENT_CONFIG_ERROR_LENGTH} characters`);
  }
  return { applied, error: typeof error === 'string' ? error : 'not applied' };
}
