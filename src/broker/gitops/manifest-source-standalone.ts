/**
 * Standalone mode's manifest source: `standalone.manifest_projects[]` maps each project id the agent
 * configurations name to a local folder (directory-manifests.ts) or a Git repository
 * (git-manifests.ts). A project id with no entry is reported to the agent (MANIFEST_PROJECT_NOT_FOUND).
 */
import { DirectoryManifests } from './directory-manifests.js';
import { GitManifests, type GitRemote } from './git-manifests.js';
import { ManifestProblemError, type ManifestLimits, type ManifestProjectSpec, type ManifestReader, type ManifestSource, type SourceResult } from './manifest-source.js';

export interface StandaloneProject {
  id: string;
  /** The number git push notifications name this project by. */
  pushId: number | null;
  source: { directory: string } | { git: GitRemote };
}

export class StandaloneManifests implements ManifestSource {
  private readonly projects = new Map<string, { pushId: number | null; read: (spec: ManifestProjectSpec, known: string | undefined) => Promise<SourceResult> }>();

  constructor(projects: readonly StandaloneProject[], cacheDir: string, limits?: Partial<ManifestLimits>) {
    for (const p of projects) {
      if ('directory' in p.source) {
        const dir = new DirectoryManifests(p.source.directory, limits);
        this.projects.set(p.id, { pushId: p.pushId, read: (spec, known) => dir.read(spec.globs, known) });
      } else {
        const git = new GitManifests(p.source.git, cacheDir, limits);
        this.projects.set(p.id, { pushId: p.pushId, read: (spec, known) => git.read(spec, known) });
      }
    }
  }

  async read(_reader: ManifestReader, spec: ManifestProjectSpec, known: string | undefined): Promise<SourceResult> {
    const p = this.projects.get(spec.id);
    if (!p) throw new ManifestProblemError('MANIFEST_PROJECT_NOT_FOUND', `no entry of standalone.manifest_projects has id ${JSON.stringify(spec.id)}`);
    const result = await p.read(spec, known);
    return { ...result, pushId: p.pushId };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
