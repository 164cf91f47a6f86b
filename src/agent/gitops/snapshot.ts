/** What the applier consumes: one commit's manifest files and the project's settings (manifest-client.ts). */
export type { ManifestSettings, ManifestSnapshot } from './manifest-client.js';
