/**
 * What the applier consumes: one commit's manifest files and the project's settings, as kas sends
 * them (the manifest stream, manifest-client.ts). Kept here until that client lands so the applier
 * does not depend on it; the shapes are the same.
 */
export interface ManifestSettings {
  defaultNamespace: string;
  reconcileTimeoutMs: number;
  dryRunStrategy: 'none' | 'client' | 'server';
  prune: boolean;
  pruneTimeoutMs: number;
  prunePropagationPolicy: 'orphan' | 'background' | 'foreground';
  inventoryPolicy: 'must_match' | 'adopt_if_no_inventory' | 'adopt_all';
}

export interface ManifestSnapshot {
  projectId: string;
  commit: string;
  settings: ManifestSettings;
  /** False when kas could not read every file of the commit (nothing is pruned then). */
  complete: boolean;
  errors: Array<{ code: string; message: string; path?: string }>;
  files: Array<{ path: string; data: Buffer }>;
}
