/** One agent connection as the API for GitLab shows it, from the registry of this replica. */
import type { AgentConnection, AgentRegistry } from '../tunnel/agent-registry.js';

/**
 * The agent's metadata: from its handshake, and from its latest registration (agent_info) once it
 * registered (`registered_at` null until then; the registration's version fields win, being newer).
 */
export interface AgentMetaRecord {
  version: string;
  commit: string;
  pod_namespace: string;
  pod_name: string;
  kubernetes_version: string;
  pod_uid: string;
  architecture: string;
  extra_telemetry: Record<string, string>;
  registered_at: string | null;
}

export interface ConnectionRecord {
  agent_id: number;
  project_id: number | null;
  connection_id: string;
  kas_instance: string;
  connected_at: string;
  agent_meta: AgentMetaRecord;
}

export function connectionRecord(c: AgentConnection, instance: string): ConnectionRecord {
  const r = c.registration;
  const meta: AgentMetaRecord = r
    ? {
        version: r.info.version,
        commit: r.info.commit,
        pod_namespace: r.info.pod_namespace,
        pod_name: r.info.pod_name,
        kubernetes_version: r.info.kubernetes_version || c.meta.kubernetesVersion,
        pod_uid: r.info.pod_uid,
        architecture: r.info.architecture,
        extra_telemetry: { ...r.info.extra_telemetry },
        registered_at: r.registeredAt.toISOString(),
      }
    : { version: c.meta.version, commit: c.meta.commit, pod_namespace: c.meta.podNamespace, pod_name: c.meta.podName, kubernetes_version: c.meta.kubernetesVersion, pod_uid: '', architecture: '', extra_telemetry: {}, registered_at: null };
  return {
    agent_id: c.identity.agentId,
    project_id: c.identity.projectId,
    connection_id: c.connectionId,
    kas_instance: instance,
    connected_at: c.connectedAt.toISOString(),
    agent_meta: meta,
  };
}

/** This replica's own answer: its connections of the agents asked for (by id or project). */
export function localConnections(registry: AgentRegistry, instance: string, agentIds: number[], projectIds: number[]): ConnectionRecord[] {
  const agents = new Set(agentIds);
  const projects = new Set(projectIds);
  return registry
    .connections()
    .filter((c) => agents.has(c.identity.agentId) || (c.identity.projectId !== null && projects.has(c.identity.projectId)))
    .map((c) => connectionRecord(c, instance));
}
