/**
 * kas configuration: the schema of the YAML file, composed of the parts each module declares
 * (modules.ts), and validation whose errors name the bad key and what was expected. Keys follow the
 * real kas configuration file where the feature is the same (docs/configuration.md lists every key;
 * a test keeps kas.example.yaml equal to the defaults).
 */
import type { z } from 'zod';
import { KAS_MODULES } from '../modules.js';
import { ConfigError } from './config-error.js';
import { composeSchema, renderExample, type ConfigOf, type ConfigPart } from './config-part.js';

export { ConfigError } from './config-error.js';
export type { TunnelConfig } from '../tunnel/config.js';
export type { AccessAs } from '../standalone/config.js';

type AllParts = (typeof KAS_MODULES)[number]['owns'][number];

/** The validated kas configuration: every module's keys, defaults applied, durations in ms. */
export type KasConfig = ConfigOf<AllParts[]>;

const parts = KAS_MODULES.flatMap((m): readonly ConfigPart[] => m.owns);

export const configSchema: z.ZodObject = composeSchema(parts);

const EXAMPLE_HEADER = `# kas configuration with every default written out (docs/configuration.md explains each key).
# Made from the modules' own parts by \`npm run example-config\`; a test checks that this file is
# what that writes and that it parses to exactly the built-in defaults.
#`;

/** kas.example.yaml: every module's part of the configuration, defaults written out. */
export function exampleConfig(): string {
  return renderExample(parts, EXAMPLE_HEADER);
}

/** Validates parsed YAML; throws ConfigError listing every bad key as "path.to.key: what was expected". */
export function validateConfig(raw: unknown): KasConfig {
  const result = configSchema.safeParse(raw ?? {});
  if (result.success) return result.data as KasConfig;
  const lines = result.error.issues.map((issue) => {
    const path = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => `${path ? `${path}.` : ''}${k}: unknown key`).join('\n');
    }
    return `${path || '(top level)'}: ${issue.message}`;
  });
  throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
}
