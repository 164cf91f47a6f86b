/** Standalone mode's agents, proxy users and agent configuration folder (used without a gitlab section). */
import { z } from 'zod';
import { configPart } from '../configuration/config-part.js';
import { dnsLabel, file } from '../configuration/fields.js';

const impersonate = z.strictObject({
  username: z.string().min(1),
  uid: z.string().optional(),
  groups: z.array(z.string()).optional(),
  extra: z.record(z.string(), z.array(z.string())).optional(),
});

export const accessAsSchema = z.union([z.strictObject({ agent: z.strictObject({}) }), z.strictObject({ impersonate })], {
  error: 'expected {agent: {}} or {impersonate: {username, groups, ...}}',
});

const standalone = z
  .strictObject({
    agents: z
      .array(z.strictObject({ id: z.number().int().min(1), name: dnsLabel, token_file: file }))
      .default([])
      .superRefine((agents, ctx) => {
        const ids = new Set<number>();
        agents.forEach((a, i) => {
          if (ids.has(a.id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `agent id ${a.id} appears twice` });
          ids.add(a.id);
        });
      }),
    proxy_tokens: z
      .array(z.strictObject({ token_file: file, agents: z.array(z.number().int().min(1)).min(1), access_as: accessAsSchema.default({ agent: {} }) }))
      .default([]),
    config_dir: file.optional(),
    /** GitOps manifest projects (the agents' gitops.manifest_projects[].id) and where their files are. */
    manifest_projects: z
      .array(
        z
          .strictObject({
            id: z.string({ error: 'expected the project id the agent configuration names, e.g. my-group/manifests' }).min(1).max(1024),
            project_id: z.number().int().min(1).optional(),
            directory: file.optional(),
            git: z.strictObject({ url: z.string({ error: 'expected a Git URL (https://, ssh://, user@host:path) or a local path' }).min(1), credentials_file: file.optional() }).optional(),
          })
          .superRefine((p, ctx) => {
            if ((p.directory === undefined) === (p.git === undefined)) ctx.addIssue({ code: 'custom', message: 'expected exactly one of directory and git' });
          }),
      )
      .default([])
      .superRefine((projects, ctx) => {
        const ids = new Set<string>();
        projects.forEach((p, i) => {
          if (ids.has(p.id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `manifest project ${p.id} appears twice` });
          ids.add(p.id);
        });
      }),
  })
  .prefault({})
  .superRefine((s, ctx) => {
    const ids = new Set(s.agents.map((a) => a.id));
    s.proxy_tokens.forEach((t, i) =>
      t.agents.forEach((id, j) => {
        if (!ids.has(id)) ctx.addIssue({ code: 'custom', path: ['proxy_tokens', i, 'agents', j], message: `agent id ${id} is not in standalone.agents` });
      }),
    );
  });

export const standaloneConfig = configPart('', { standalone }, `standalone:
  agents: []
  proxy_tokens: []
  # config_dir: /etc/kas/agents   # agent configuration files: <config_dir>/<agent-name>/config.yaml
  manifest_projects: []           # GitOps: [{id, project_id?, directory | git: {url, credentials_file?}}]`);

export type StandaloneConfig = z.output<typeof standalone>;
export type AccessAs = z.output<typeof accessAsSchema>;
