/**
 * What agentk tells kas about its platform: the CPU architecture by Go's name (what GitLab's agentk
 * reports, so GitLab's usage data reads the same) and extra telemetry from the environment.
 */
import { hasControlCharacters, MAX_TELEMETRY_ENTRIES, MAX_TELEMETRY_VALUE_LENGTH, TELEMETRY_KEY } from '../../protocol/agent-info.js';

/** Environment variables with this prefix become extra telemetry (the chart sets some). */
export const TELEMETRY_ENV_PREFIX = 'GITLAB_AGENT_TELEMETRY_';

const GO_ARCH: Partial<Record<NodeJS.Architecture, string>> = {
  x64: 'amd64',
  arm64: 'arm64',
  ia32: '386',
  arm: 'arm',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
};

/** Go's GOARCH for a Node `process.arch` (Node's own name when Go has none). */
export function goArchitecture(arch: NodeJS.Architecture | string = process.arch): string {
  const mapped = GO_ARCH[arch as NodeJS.Architecture];
  if (mapped) return mapped;
  return arch.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 32);
}

export interface TelemetryFromEnv {
  telemetry: Record<string, string>;
  /** Variables left out, with why (for one warning at start). */
  skipped: Array<{ name: string; reason: string }>;
}

/**
 * `GITLAB_AGENT_TELEMETRY_<NAME>=<value>` → `{<name lowercased>: value}`, within the limits kas
 * enforces: keys of a-z, 0-9 and _ up to 64 characters, values up to 256 characters, at most 20
 * entries (the first 20 keys in sorted order). Anything else is skipped, not sent.
 */
export function telemetryFromEnv(env: NodeJS.ProcessEnv): TelemetryFromEnv {
  const telemetry: Record<string, string> = {};
  const skipped: Array<{ name: string; reason: string }> = [];
  const names = Object.keys(env)
    .filter((name) => name.startsWith(TELEMETRY_ENV_PREFIX))
    .sort();
  for (const name of names) {
    const key = name.slice(TELEMETRY_ENV_PREFIX.length).toLowerCase();
    const value = env[name] ?? '';
    if (!TELEMETRY_KEY.test(key)) skipped.push({ name, reason: 'the name after the prefix must be 1 to 64 characters of letters, digits and _' });
    else if (value.length > MAX_TELEMETRY_VALUE_LENGTH) skipped.push({ name, reason: `the value is longer than ${MAX_TELEMETRY_VALUE_LENGTH} characters` });
    else if (hasControlCharacters(value)) skipped.push({ name, reason: 'the value holds control characters' });
    else if (key in telemetry) skipped.push({ name, reason: 'another variable gives the same key' });
    else if (Object.keys(telemetry).length >= MAX_TELEMETRY_ENTRIES) skipped.push({ name, reason: `more than ${MAX_TELEMETRY_ENTRIES} telemetry variables` });
    else telemetry[key] = value;
  }
  return { telemetry, skipped };
}
