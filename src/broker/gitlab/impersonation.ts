/**
 * What identity a proxy request acts as in the cluster, decided in kas from GitLab's answers
 * (gitlab-contract.md, "Impersonation"); agentk applies it as Impersonate-* headers.
 */
import type { Impersonation } from '../../protocol/http.js';
import type { AllowedAgents, AuthorizeProxyUser } from './client.js';

type AllowedAgent = AllowedAgents['allowed_agents'][number];

/** user_access: `agent` → none; `user` → gitlab:user:<username> with project and group roles. */
export function userAccessImpersonation(answer: AuthorizeProxyUser, accessType: 'personal_access_token' | 'session_cookie'): Impersonation | null {
  const access = answer.access_as;
  if ('agent' in access) return null;
  const groups = ['gitlab:user'];
  for (const p of access.user.projects) for (const role of p.roles) groups.push(`gitlab:project_role:${p.id}:${role}`);
  for (const g of access.user.groups) for (const role of g.roles) groups.push(`gitlab:group_role:${g.id}:${role}`);
  return {
    username: `gitlab:user:${answer.user.username}`,
    groups,
    extra: {
      'agent.gitlab.com/id': [String(answer.agent.id)],
      'agent.gitlab.com/username': [answer.user.username],
      'agent.gitlab.com/access_type': [accessType],
      'agent.gitlab.com/config_project_id': [String(answer.agent.config_project.id)],
    },
  };
}

/** ci_access: per the agent's configuration for this job: agent (none), impersonate (exactly that) or ci_job. */
export function ciAccessImpersonation(job: AllowedAgents, agent: AllowedAgent): Impersonation | null {
  const accessAs = agent.configuration?.access_as;
  if (!accessAs || 'agent' in accessAs) return null;
  if ('impersonate' in accessAs) {
    const imp = accessAs.impersonate;
    const result: Impersonation = { username: imp.username };
    if (imp.uid !== undefined) result.uid = imp.uid;
    if (imp.groups) result.groups = imp.groups;
    if (imp.extra) {
      result.extra = Array.isArray(imp.extra) ? Object.fromEntries(imp.extra.map((e) => [e.key, e.val])) : imp.extra;
    }
    return result;
  }
  const pid = job.project.id;
  const groups = ['gitlab:ci_job', ...job.project.groups.map((g) => `gitlab:group:${g.id}`), `gitlab:project:${pid}`];
  const extra: Record<string, string[]> = {
    'agent.gitlab.com/id': [String(agent.id)],
    'agent.gitlab.com/config_project_id': [String(agent.config_project.id)],
    'agent.gitlab.com/project_id': [String(pid)],
    'agent.gitlab.com/ci_pipeline_id': [String(job.pipeline.id)],
    'agent.gitlab.com/ci_job_id': [String(job.job.id)],
    'agent.gitlab.com/username': [job.user.username],
  };
  const env = job.environment;
  if (env) {
    groups.push(`gitlab:project_env:${pid}:${env.slug}`, `gitlab:project_env_tier:${pid}:${env.tier}`);
    for (const g of job.project.groups) groups.push(`gitlab:group_env_tier:${g.id}:${env.tier}`);
    extra['agent.gitlab.com/environment_slug'] = [env.slug];
    extra['agent.gitlab.com/environment_tier'] = [env.tier];
  }
  return { username: `gitlab:ci_job:${job.job.id}`, groups, extra };
}
