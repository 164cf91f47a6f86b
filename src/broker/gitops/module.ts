/**
 * The GitOps feature, kas half: polls the manifest projects of every connected agent's
 * `gitops.manifest_projects` (GitLab's REST API in GitLab mode; `standalone.manifest_projects`
 * folders and Git repositories in standalone mode) and serves the `gitops_manifests` streams agentk
 * opens to receive them. A git push notification for a project polls it at once. Off with
 * `agent.gitops.enabled: false`, without the agent configuration feature, or in GitLab mode without
 * a repository token.
 */
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_CONFIGURATION } from '../agent-configuration/module.js';
import { ConfigError } from '../configuration/config-error.js';
import { agentInfoCacheConfig } from '../gitlab/config.js';
import { GITLAB } from '../gitlab/module.js';
import { defineModule } from '../module.js';
import { REPLICA_STATE } from '../replicas/service.js';
import { standaloneConfig } from '../standalone/config.js';
import { AGENT_STREAMS } from '../tunnel/agent-streams.js';
import { GITOPS_MANIFESTS_STREAM } from '../../protocol/gitops.js';
import { gitopsConfig } from './config.js';
import { basicAuthHeader, isSshUrl, type GitRemote } from './git-manifests.js';
import { GitLabManifests } from './gitlab-manifests.js';
import type { ManifestSource } from './manifest-source.js';
import { StandaloneManifests, type StandaloneProject } from './manifest-source-standalone.js';
import { serveManifestStream } from './manifest-stream.js';
import { GitopsMetrics } from './metrics.js';
import { ManifestPoller } from './poller.js';

export const gitopsModule = defineModule({
  name: 'gitops',
  owns: [gitopsConfig],
  reads: [standaloneConfig, agentInfoCacheConfig],
  create(ctx) {
    const { config, services, logger } = ctx;
    const g = config.agent.gitops;
    if (!g.enabled) return null;
    const agentConfiguration = services.find(AGENT_CONFIGURATION);
    if (!agentConfiguration) {
      logger.info('agent configurations are not read (no repository token or standalone.config_dir): GitOps is off');
      return null;
    }
    const gitlab = services.find(GITLAB);
    let source: ManifestSource;
    let ownCache: string | null = null;
    if (gitlab) {
      source = new GitLabManifests({ client: gitlab.client, infoCacheTtlMs: config.agent.info_cache_ttl, infoCacheErrorTtlMs: config.agent.info_cache_error_ttl });
    } else {
      let cacheDir = g.cache_dir;
      if (cacheDir) {
        try {
          mkdirSync(cacheDir, { recursive: true });
          accessSync(cacheDir, constants.W_OK);
        } catch (err) {
          throw new ConfigError(`agent.gitops.cache_dir: cannot use ${cacheDir}: ${(err as Error).message}`, { cause: err });
        }
      } else if (config.standalone.manifest_projects.some((p) => p.git)) {
        cacheDir = ownCache = mkdtempSync(join(tmpdir(), 'kas-gitops-'));
      }
      const projects: StandaloneProject[] = config.standalone.manifest_projects.map((p, i) => {
        if (p.directory !== undefined) return { id: p.id, pushId: p.project_id ?? null, source: { directory: p.directory } };
        const git = p.git!;
        const key = `standalone.manifest_projects[${i}].git`;
        if (git.url.startsWith('-')) throw new ConfigError(`${key}.url: a Git URL cannot start with "-"`);
        const remote: GitRemote = { url: git.url };
        if (git.credentials_file) {
          try {
            if (isSshUrl(git.url)) {
              accessSync(git.credentials_file, constants.R_OK);
              remote.credentials = { kind: 'ssh_key', file: git.credentials_file };
            } else {
              const content = readFileSync(git.credentials_file, 'utf8');
              if (content.trim() === '') throw new Error('the file is empty');
              remote.credentials = { kind: 'basic', header: basicAuthHeader(content.trim()) };
            }
          } catch (err) {
            throw new ConfigError(`${key}.credentials_file: cannot use ${git.credentials_file}: ${(err as Error).message}`, { cause: err });
          }
        }
        return { id: p.id, pushId: p.project_id ?? null, source: { git: remote } };
      });
      source = new StandaloneManifests(projects, cacheDir ?? tmpdir());
    }
    const metrics = new GitopsMetrics(ctx.metrics);
    const poller = new ManifestPoller({
      source,
      registry: ctx.agents,
      pollPeriodMs: g.poll_period,
      metrics,
      logger,
      defaultProjectOf: (agentId) => {
        const projectId = ctx.agents.connections(agentId).at(-1)?.identity.projectId;
        return projectId === undefined || projectId === null ? null : String(projectId);
      },
    });
    agentConfiguration.subscribe('gitops', (section, agentId) => poller.configure(agentId, section));
    services.get(REPLICA_STATE).gitPush.subscribe((projectId) => poller.gitPush(projectId));
    services.get(AGENT_STREAMS).register(GITOPS_MANIFESTS_STREAM, (stream, connection, streamLogger) => serveManifestStream(poller, metrics, stream, connection, streamLogger.child({ module: 'gitops' })));
    return {
      start: () => {
        poller.start();
        return Promise.resolve();
      },
      stop: async () => {
        await poller.stop();
        if (ownCache) rmSync(ownCache, { recursive: true, force: true });
      },
    };
  },
});
