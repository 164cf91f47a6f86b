/** Reads the kas configuration file (YAML) and validates it. */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ConfigError, validateConfig, type KasConfig } from './schema.js';

export function loadConfigFile(path: string): KasConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read configuration file ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parse(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(`configuration file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  return validateConfig(raw);
}
