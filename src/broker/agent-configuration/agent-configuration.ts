/**
 * The agent configuration feature, kas half. For every agent connected to this kas it reads the
 * agent's `config.yaml` (from GitLab or a local directory) when the agent's first session registers,
 * then every poll period and whenever asked (a git push); validates it; and puts each new valid
 * configuration in force: GitLab is told (GitLab mode) and every session of the agent gets it over
 * an `agent_config` stream, as do sessions that connect later. A broken file leaves the last valid
 * configuration in force; it is logged, counted and shown by `status()`. Polling for an agent stops
 * when its last session goes.
 *
 * Concurrency: one poll at a time per agent (a request during a poll runs once more right after it);
 * one push at a time per session (a newer configuration follows when the previous push is answered).
 * Everything runs on the event loop; the public methods may be called at any time after construction.
 */
import { AGENT_CONFIG_STREAM, decodeAgentConfigReply, encodeAgentConfigData, encodeAgentConfigHead, type AgentConfigDocument, type AgentConfigReply } from '../../protocol/agent-config.js';
import { isTunnelError } from '../../protocol/errors.js';
import { replyOf, type TunnelStream } from '../../protocol/stream.js';
import { hasErrorCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { AgentIdentity } from '../auth/types.js';
import type { GitLabClient } from '../gitlab/client.js';
import type { AgentConfigMetrics } from './metrics.js';
import type { AgentConnection, AgentRegistry } from '../tunnel/agent-registry.js';
import type { ConfigFile, ConfigSource } from './config-source.js';
import { SectionFanOut, type SectionListener } from '../../shared/section-fan-out.js';
import { parseAgentConfig, type AgentConfiguration, type ParsedAgentConfig } from './schema.js';

export interface AgentConfigurationDeps {
  registry: AgentRegistry;
  source: ConfigSource;
  /** GitLab mode: GitLab is told each new valid configuration. Null in standalone mode. */
  gitlab: Pick<GitLabClient, 'postAgentConfiguration'> | null;
  /** `agent.configuration.poll_period`, ms. */
  pollPeriodMs: number;
  metrics: AgentConfigMetrics;
  logger: Logger;
  /** How long agentk may take to answer a push before the stream is reset, ms (default 30 s). */
  replyTimeoutMs?: number;
}

/**
 * What kas knows of an agent's configuration, for the API for GitLab (JSON as is). Field names are
 * snake_case because they go to GitLab unchanged.
 */
export interface AgentConfigStatus {
  /** Version of the file last read: its commit id (GitLab mode) or `sha256:<hex>` (standalone); null: no file. */
  commit: string | null;
  /** False when the file last read is broken: the configuration of `applied_commit` stays in force. */
  valid: boolean;
  /** Why the file is broken (when `valid` is false); safe to show to users. */
  error?: string;
  /** Sections of the configuration in force that this project does not implement (ignored). */
  unsupported_sections: string[];
  /** Version of the configuration in force; null when none was ever valid, or it is the empty one of a missing file. */
  applied_commit: string | null;
  /** When the configuration in force was put in force (ISO 8601); null when none is. */
  applied_at: string | null;
}

/** A valid configuration in force. */
interface InForce {
  commit: string | null;
  parsed: ParsedAgentConfig;
  /** What agentk is sent: the encoded document. */
  data: Uint8Array;
  /** Tells configurations apart even when a version comes back (A, B, A again). */
  generation: number;
  appliedAt: Date;
}

interface AgentState {
  readonly agentId: number;
  timer: NodeJS.Timeout | null;
  polling: boolean;
  /** A poll was asked for while one ran. */
  again: boolean;
  /** Version of the file last read, valid or not; undefined before the first read. */
  seen: string | null | undefined;
  inForce: InForce | null;
  status: AgentConfigStatus | null;
  /** Generation GitLab still has to be told about (GitLab mode); null when it is up to date. */
  gitlabPending: number | null;
  /** Per connection id: the generation it has (applied, refused, or never able to take one). */
  delivered: Map<string, number>;
  /** Connection ids with a push in flight. */
  pushing: Set<string>;
}

const DEFAULT_REPLY_TIMEOUT_MS = 30_000;

/** Tunnel codes that mean "the session is going away", not "agentk failed". */
const SESSION_GONE = new Set(['SESSION_CLOSED', 'CONNECTION_LOST', 'GOING_AWAY', 'STREAM_REFUSED', 'KEEPALIVE_TIMEOUT', 'AUTH_REVOKED']);

export class AgentConfigurationServer {
  private readonly deps: AgentConfigurationDeps;
  private readonly states = new Map<number, AgentState>();
  private unsubscribe: (() => void) | null = null;
  private running = false;
  private generation = 0;
  private readonly sections: SectionFanOut<AgentConfiguration, number>;

  constructor(deps: AgentConfigurationDeps) {
    this.deps = deps;
    this.sections = new SectionFanOut((err, section) => deps.logger.error({ err, section }, 'a subscriber of the agent configuration failed'));
  }

  /** Starts following the registry: agents connected already are polled at once. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.unsubscribe = this.deps.registry.onChange((agentId) => this.onAgentChange(agentId));
    for (const agentId of new Set(this.deps.registry.connections().map((c) => c.identity.agentId))) this.onAgentChange(agentId);
  }

  /**
   * Stops polling and forgets every agent. Polls still waiting for GitLab finish without effect;
   * pushes in flight end with their sessions (the agent listener closes them).
   */
  async stop(): Promise<void> {
    this.running = false;
    this.unsubscribe?.();
    this.unsubscribe = null;
    for (const st of this.states.values()) {
      if (st.timer) clearTimeout(st.timer);
      this.sections.remove(st.agentId);
    }
    this.states.clear();
    this.deps.metrics.agentConfigsInvalid.set(0);
  }

  /**
   * Reads the configuration files of every connected agent whose configuration project is
   * `projectId` now, instead of at the next poll (GitLab's git-push notification). Returns at once;
   * agents not connected to this kas are ignored.
   */
  pollProject(projectId: number): void {
    for (const st of this.states.values()) {
      if (this.identityOf(st.agentId)?.projectId === projectId) void this.poll(st);
    }
  }

  /** Reads one connected agent's configuration file now (standalone mode has no projects). Returns at once. */
  pollAgent(agentId: number): void {
    const st = this.states.get(agentId);
    if (st) void this.poll(st);
  }

  /**
   * The configuration state of an agent connected to this kas: null when it is not connected, or
   * before its file was first read. A copy: the caller may keep or change it.
   */
  status(agentId: number): AgentConfigStatus | null {
    const s = this.states.get(agentId)?.status;
    return s ? { ...s, unsupported_sections: [...s.unsupported_sections] } : null;
  }

  /**
   * Follows one section of every connected agent's configuration in force: the listener is called
   * at once for each agent that has one, then whenever that section changes, and with `undefined`
   * when the agent's last session on this kas is gone. Returns the function that unsubscribes.
   */
  subscribe<S extends keyof AgentConfiguration>(section: S, listener: SectionListener<AgentConfiguration[S], number>): () => void {
    return this.sections.subscribe(section, listener);
  }

  /** The configuration in force of an agent connected to this kas (validated, defaults applied), if any. */
  configuration(agentId: number): AgentConfiguration | undefined {
    return this.sections.current(agentId);
  }

  // ---- following connections ----------------------------------------------------------------

  private onAgentChange(agentId: number): void {
    if (!this.running) return;
    const connections = this.deps.registry.connections(agentId);
    let st = this.states.get(agentId);
    if (connections.length === 0) {
      if (st) {
        if (st.timer) clearTimeout(st.timer);
        this.states.delete(agentId);
        this.sections.remove(agentId);
        this.updateInvalidGauge();
      }
      return;
    }
    if (!st) {
      st = { agentId, timer: null, polling: false, again: false, seen: undefined, inForce: null, status: null, gitlabPending: null, delivered: new Map(), pushing: new Set() };
      this.states.set(agentId, st);
      void this.poll(st);
      return;
    }
    const live = new Set(connections.map((c) => c.connectionId));
    for (const id of st.delivered.keys()) if (!live.has(id)) st.delivered.delete(id);
    this.deliver(st);
  }

  /** The newest identity of a connected agent (a reconnect may bring a new default branch). */
  private identityOf(agentId: number): AgentIdentity | null {
    const connections = this.deps.registry.connections(agentId);
    return connections.at(-1)?.identity ?? null;
  }

  private isCurrent(st: AgentState): boolean {
    return this.running && this.states.get(st.agentId) === st;
  }

  // ---- polling ----------------------------------------------------------------------------

  private async poll(st: AgentState): Promise<void> {
    if (st.polling) {
      st.again = true;
      return;
    }
    if (st.timer) clearTimeout(st.timer);
    st.timer = null;
    st.polling = true;
    try {
      await this.pollOnce(st);
    } catch (err) {
      this.deps.logger.error({ err, agentId: st.agentId }, 'agent configuration poll failed');
    } finally {
      st.polling = false;
    }
    if (!this.isCurrent(st)) return;
    if (st.again) {
      st.again = false;
      void this.poll(st);
      return;
    }
    // ±10 % jitter, so agents that connected together do not poll GitLab together.
    st.timer = setTimeout(() => void this.poll(st), this.deps.pollPeriodMs * (0.9 + Math.random() * 0.2));
    st.timer.unref();
  }

  private async pollOnce(st: AgentState): Promise<void> {
    const { source, metrics, logger } = this.deps;
    const identity = this.identityOf(st.agentId);
    if (!identity) return;
    let file: ConfigFile | null;
    try {
      file = await source.read(identity, st.seen);
    } catch (err) {
      if (!this.isCurrent(st)) return;
      metrics.agentConfigErrors.inc({ reason: 'fetch' });
      logger.warn({ err, agentId: st.agentId }, 'could not read the agent configuration file; the configuration in force stays');
      return;
    }
    if (!this.isCurrent(st)) return;
    if (file) this.take(st, file);
    // Also sessions a push could not reach before (their stream limit was full) get another chance.
    this.deliver(st);
    if (st.gitlabPending !== null) await this.tellGitLab(st);
  }

  /** Takes a newly read file: a valid one is put in force, a broken one is reported. */
  private take(st: AgentState, file: ConfigFile): void {
    const { metrics, logger } = this.deps;
    st.seen = file.commit;
    let parsed: ParsedAgentConfig;
    try {
      if (file.problem) throw file.problem;
      parsed = parseAgentConfig(file.content);
    } catch (err) {
      if (!hasErrorCode(err, 'AGENT_CONFIG_INVALID')) throw err;
      const inForce = st.inForce;
      st.status = {
        commit: file.commit,
        valid: false,
        error: err.message,
        unsupported_sections: inForce ? [...inForce.parsed.unsupportedSections] : [],
        applied_commit: inForce?.commit ?? null,
        applied_at: inForce ? inForce.appliedAt.toISOString() : null,
      };
      metrics.agentConfigErrors.inc({ reason: 'invalid' });
      this.updateInvalidGauge();
      logger.warn({ agentId: st.agentId, commit: file.commit, error: err.message, inForce: inForce?.commit ?? null }, 'the agent configuration file is invalid; the last valid configuration stays in force');
      return;
    }
    const inForce: InForce = { commit: file.commit, parsed, data: encodeAgentConfigData(withManifestProjectIds(parsed.forAgent, this.identityOf(st.agentId)?.projectId ?? null)), generation: ++this.generation, appliedAt: new Date() };
    st.inForce = inForce;
    this.sections.publish(st.agentId, parsed.config);
    st.status = { commit: file.commit, valid: true, unsupported_sections: [...parsed.unsupportedSections], applied_commit: file.commit, applied_at: inForce.appliedAt.toISOString() };
    metrics.agentConfigUpdates.inc();
    this.updateInvalidGauge();
    logger.info({ agentId: st.agentId, commit: file.commit }, 'new agent configuration in force');
    if (parsed.unsupportedSections.length > 0) {
      logger.warn({ agentId: st.agentId, commit: file.commit, sections: parsed.unsupportedSections }, 'the agent configuration has sections of features this kas does not implement; they are ignored');
    }
    if (this.deps.gitlab) st.gitlabPending = inForce.generation;
  }

  /** Tells GitLab the configuration in force; on failure it is tried again at the next poll. */
  private async tellGitLab(st: AgentState): Promise<void> {
    const { gitlab, metrics, logger } = this.deps;
    const inForce = st.inForce;
    if (!gitlab || !inForce || st.gitlabPending !== inForce.generation) return;
    try {
      await gitlab.postAgentConfiguration(st.agentId, inForce.parsed.config);
      if (st.gitlabPending === inForce.generation) st.gitlabPending = null;
    } catch (err) {
      if (!this.isCurrent(st)) return;
      metrics.agentConfigErrors.inc({ reason: 'gitlab' });
      logger.warn({ err, agentId: st.agentId, commit: inForce.commit }, 'could not tell GitLab the agent configuration; trying again at the next poll');
    }
  }

  private updateInvalidGauge(): void {
    let n = 0;
    for (const st of this.states.values()) if (st.status && !st.status.valid) n++;
    this.deps.metrics.agentConfigsInvalid.set(n);
  }

  // ---- pushing to agentk --------------------------------------------------------------------

  /** Sends the configuration in force to every session of the agent that does not have it yet. */
  private deliver(st: AgentState): void {
    const inForce = st.inForce;
    if (!inForce || !this.isCurrent(st)) return;
    for (const conn of this.deps.registry.connections(st.agentId)) {
      if (st.delivered.get(conn.connectionId) === inForce.generation || st.pushing.has(conn.connectionId)) continue;
      this.push(st, conn, inForce);
    }
  }

  private push(st: AgentState, conn: AgentConnection, inForce: InForce): void {
    const logger = this.deps.logger.child({ agentId: st.agentId, sessionId: conn.connectionId });
    const id = conn.connectionId;
    if (!conn.meta.features.includes(AGENT_CONFIG_STREAM)) {
      // An agentk that predates the feature: nothing to send it, ever.
      st.delivered.set(id, inForce.generation);
      logger.debug('agentk does not serve agent_config streams; not sending it the configuration');
      return;
    }
    let stream: TunnelStream;
    try {
      stream = conn.session.openStream(encodeAgentConfigHead({ commit: inForce.commit }), { data: inForce.data, end: true });
    } catch (err) {
      // Draining or closed: the replacement session gets the configuration when it registers.
      logger.debug({ err }, 'could not open an agent_config stream');
      return;
    }
    st.pushing.add(id);
    const timer = setTimeout(() => stream.reset('CANCELLED', 'agentk did not answer the configuration in time'), this.deps.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS);
    timer.unref();
    awaitReply(stream).then(
      (reply) => this.pushed(st, id, inForce, reply, null, logger),
      (err: unknown) => this.pushed(st, id, inForce, null, err, logger),
    ).finally(() => clearTimeout(timer));
  }

  private pushed(st: AgentState, id: string, inForce: InForce, reply: AgentConfigReply | null, err: unknown, logger: Logger): void {
    st.pushing.delete(id);
    if (!this.isCurrent(st)) return;
    if (reply?.applied) {
      st.delivered.set(id, inForce.generation);
      logger.debug({ commit: inForce.commit }, 'agentk applied the configuration');
    } else if (reply) {
      // Sending the same configuration again would fail the same way; a new one will be sent.
      st.delivered.set(id, inForce.generation);
      this.deps.metrics.agentConfigErrors.inc({ reason: 'agent' });
      logger.warn({ commit: inForce.commit, error: reply.error }, 'agentk could not apply the configuration');
    } else if (isTunnelError(err) && SESSION_GONE.has(err.code)) {
      logger.debug({ code: err.code }, 'the session went away before agentk answered the configuration');
      return;
    } else {
      st.delivered.set(id, inForce.generation);
      this.deps.metrics.agentConfigErrors.inc({ reason: 'agent' });
      logger.warn({ err, commit: inForce.commit }, 'sending the configuration to agentk failed');
    }
    this.deliver(st);
  }
}

/**
 * What agentk is sent: a manifest project without an `id` is the configuration project (GitLab
 * mode), so agentk can name it when it opens its `gitops_manifests` stream. Standalone mode has no
 * configuration project; such an entry stays without id (kas reports it, agentk skips it).
 */
function withManifestProjectIds(doc: AgentConfigDocument, configProjectId: number | null): AgentConfigDocument {
  const projects = doc.gitops?.manifest_projects;
  if (!projects || configProjectId === null || projects.every((p) => p.id !== undefined)) return doc;
  return { ...doc, gitops: { ...doc.gitops, manifest_projects: projects.map((p) => (p.id === undefined ? { ...p, id: String(configProjectId) } : p)) } };
}

/** Resolves agentk's answer; rejects when the stream fails or ends first, or the answer is malformed. */
async function awaitReply(stream: TunnelStream): Promise<AgentConfigReply> {
  const head = await replyOf(stream);
  try {
    const reply = decodeAgentConfigReply(head);
    // agentk sends no data; take whatever comes so the stream can finish.
    stream.resume();
    return reply;
  } catch (err) {
    stream.reset('PROTOCOL_ERROR', 'invalid agent_config reply');
    throw err;
  }
}
