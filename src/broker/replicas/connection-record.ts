/** One agent connection as the API for GitLab shows it, from the registry of this replica. */
import type { AgentConnection, AgentRegistry } from '../tunnel/agent-registry.js';

export interface ConnectionRecord {
  agent_id: number;
  project_id: number | null;
  connection_id: string;
  kas_instance: string;
  connected_at: string;
  agent_meta: { version: string; commit: string; pod_namespace: string; pod_name: string; kubernetes_version: string };
}

export function connectionRecord(c: AgentConnection, instance: string): ConnectionRecord {
  return {
    agent_id: c.identity.agentId,
    project_id: c.identity.projectId,
    connection_id: c.connectionId,
    kas_instance: instance,
    connected_at: c.connectedAt.toISOString(),
    agent_meta: { version: c.meta.version, commit: c.meta.commit, pod_namespace: c.meta.podNamespace, pod_name: c.meta.podName, kubernetes_version: c.meta.kubernetesVersion },
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
