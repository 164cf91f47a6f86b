/**
 * The agent configuration file `.gitlab/agents/<agent-name>/config.yaml`: its schema (the keys of
 * GitLab's agent configuration), and parsing that turns the file's bytes into a validated, normalised
 * configuration or an AgentConfigFileError naming every bad key. kas parses; agentk only ever sees the
 * result (src/protocol/agent-config.ts). docs/agent-configuration.md describes the file.
 */
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { AGENT_EVENT_TYPES, AGENT_LOG_LEVELS, MAX_AGENT_CONFIG_BYTES, MAX_AGENT_EVENTS_BURST, MAX_AGENT_EVENTS_RATE, type AgentConfigDocument } from '../../protocol/agent-config.js';
import { parseDuration } from '../../shared/duration.js';
import { LabelSelectorError, MAX_LABEL_SELECTOR_LENGTH, parseLabelSelector } from '../../shared/label-selector.js';
import { AgentConfigFileError } from './agent-config-file-error.js';

/** Largest configuration file kas reads; a larger one is a configuration error. */
export const MAX_CONFIG_FILE_BYTES = 128 * 1024;

/** Sections of GitLab features this project does not implement: accepted, reported, not acted on. */
export const UNSUPPORTED_SECTIONS = ['container_scanning', 'remote_development', 'flux', 'resource_management'] as const;

/** Most entries of each list (projects, groups, manifest projects, paths, ...). */
const MAX_ENTRIES = 100;
/** Most YAML aliases expanded while reading a file (an alias bomb stops here). */
const MAX_ALIASES = 100;
/** Most issues listed in one error. */
const MAX_ISSUES = 20;

/** A field that may be absent or YAML null (`key:` with nothing after it); both mean "not set". */
const optional = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (v === null ? undefined : v), schema.optional()).optional();

const text = (what: string) => z.string({ error: `expected ${what}` }).min(1, `expected ${what}`).max(1024, 'expected at most 1024 characters');

const list = <T extends z.ZodType>(item: T) => z.array(item, { error: 'expected a list' }).max(MAX_ENTRIES, `expected at most ${MAX_ENTRIES} entries`);

const namespace = z
  .string({ error: 'expected a Kubernetes namespace name' })
  .max(63, 'expected at most 63 characters')
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'expected a Kubernetes namespace name (lower-case letters, digits and "-")');

/** Durations as GitLab writes them ("300s"); "5m" and "1h30m" are accepted too. Normalised to seconds, "300s". */
const duration = z.string({ error: 'expected a duration string such as "300s"' }).transform((s, ctx) => {
  const ms = parseDuration(s);
  if (ms === null) {
    ctx.addIssue({ code: 'custom', message: `expected a duration such as "300s", "5m" or "1h", got ${JSON.stringify(s)}` });
    return z.NEVER;
  }
  return `${ms / 1000}s`;
});

/** `agent: {}` style choices: the key alone (`agent:`) or an empty map. */
const marker = z.preprocess((v) => v ?? {}, z.strictObject({}, { error: 'expected an empty map {}' }));

/** Exactly one of the keys of a choice map is set. */
function exactlyOne(keys: readonly string[]) {
  return (value: Record<string, unknown>, ctx: z.RefinementCtx) => {
    const set = keys.filter((k) => value[k] !== undefined);
    if (set.length === 0) ctx.addIssue({ code: 'custom', message: `expected one of ${keys.join(', ')}` });
    else if (set.length > 1) ctx.addIssue({ code: 'custom', message: `expected only one of ${keys.join(', ')}, got ${set.join(' and ')}` });
  };
}

const impersonate = z.strictObject({
  username: text('the user name to impersonate'),
  uid: optional(z.string()),
  groups: optional(list(z.string())),
  extra: optional(list(z.strictObject({ key: text('the extra key'), val: z.array(z.string()) }))),
});

const ciAccessAs = z
  .strictObject({ agent: marker.optional(), impersonate: optional(impersonate), ci_job: marker.optional() })
  .superRefine(exactlyOne(['agent', 'impersonate', 'ci_job']));

const ciEntry = z.strictObject({
  id: text('the full path of a project or group, e.g. my-group/my-project'),
  default_namespace: optional(namespace),
  access_as: optional(ciAccessAs),
  environments: optional(list(text('an environment name or pattern'))),
  protected_branches_only: optional(z.boolean({ error: 'expected true or false' })),
});

const ciAccess = z.strictObject({ projects: optional(list(ciEntry)), groups: optional(list(ciEntry)) });

const userAccess = z.strictObject({
  access_as: optional(z.strictObject({ agent: marker.optional(), user: marker.optional() }).superRefine(exactlyOne(['agent', 'user']))),
  projects: optional(list(z.strictObject({ id: text('the full path of a project') }))),
  groups: optional(list(z.strictObject({ id: text('the full path of a group') }))),
});

const manifestProject = z.strictObject({
  id: optional(text('the full path of a project')),
  ref: optional(
    z
      .strictObject({
        branch: optional(text('a branch name')),
        tag: optional(text('a tag name')),
        commit: optional(z.string().regex(/^[0-9a-f]{7,64}$/, 'expected a commit id (hexadecimal)')),
      })
      .superRefine(exactlyOne(['branch', 'tag', 'commit'])),
  ),
  default_namespace: optional(namespace),
  paths: optional(list(z.strictObject({ glob: text('a glob such as "manifests/**/*.yaml"') }))),
  reconcile_timeout: optional(duration),
  dry_run_strategy: optional(z.enum(['none', 'client', 'server'])),
  prune: optional(z.boolean({ error: 'expected true or false' })),
  prune_timeout: optional(duration),
  prune_propagation_policy: optional(z.enum(['orphan', 'background', 'foreground'])),
  inventory_policy: optional(z.enum(['must_match', 'adopt_if_no_inventory', 'adopt_all'])),
});

const logLevel = z.enum(AGENT_LOG_LEVELS);

/** `observability.events`: which cluster events agentk sends to kas, and how many at most. */
const clusterEvents = z.strictObject({
  types: optional(
    list(z.enum(AGENT_EVENT_TYPES, { error: `expected one of ${AGENT_EVENT_TYPES.join(', ')}` })).refine((l) => new Set(l).size === l.length, 'expected each type once'),
  ),
  namespaces: optional(list(namespace)),
  label_selector: optional(
    z
      .string({ error: 'expected a label selector such as "app=web,tier!=db"' })
      .max(MAX_LABEL_SELECTOR_LENGTH, `expected at most ${MAX_LABEL_SELECTOR_LENGTH} characters`)
      .superRefine((s, ctx) => {
        try {
          parseLabelSelector(s);
        } catch (err) {
          if (!(err instanceof LabelSelectorError)) throw err;
          ctx.addIssue({ code: 'custom', message: `expected a label selector such as "app=web,tier!=db": ${err.message}` });
        }
      }),
  ),
  rate_limit: optional(z.number({ error: 'expected events per second' }).positive('expected more than 0 events per second').max(MAX_AGENT_EVENTS_RATE, `expected at most ${MAX_AGENT_EVENTS_RATE} events per second`)),
  burst: optional(z.number({ error: 'expected a number of events' }).int('expected a whole number of events').min(1, 'expected at least 1').max(MAX_AGENT_EVENTS_BURST, `expected at most ${MAX_AGENT_EVENTS_BURST}`)),
});

const unsupported = Object.fromEntries(UNSUPPORTED_SECTIONS.map((k) => [k, z.unknown().optional()])) as Record<(typeof UNSUPPORTED_SECTIONS)[number], z.ZodOptional<z.ZodUnknown>>;

export const agentConfigSchema = z.strictObject({
  ci_access: optional(ciAccess),
  user_access: optional(userAccess),
  gitops: optional(z.strictObject({ manifest_projects: optional(list(manifestProject)) })),
  observability: optional(
    z.strictObject({
      logging: optional(
        z.strictObject({
          level: optional(logLevel),
          // In GitLab's schema; there is no gRPC here, so it is accepted and has no effect.
          grpc_level: optional(logLevel),
        }),
      ),
      events: optional(clusterEvents),
    }),
  ),
  ...unsupported,
});

/** A validated configuration: the file's keys, durations normalised to "<seconds>s", nulls dropped. */
export type AgentConfiguration = z.output<typeof agentConfigSchema>;

export interface ParsedAgentConfig {
  /** Everything the file said, validated (unsupported sections as written): what GitLab is told. */
  config: AgentConfiguration;
  /** What agentk is sent: the configuration without the sections nobody here acts on. */
  forAgent: AgentConfigDocument;
  /** Sections of the file this project does not implement, in file order. */
  unsupportedSections: string[];
}

function issueLines(issues: z.ZodError['issues']): string[] {
  const lines = issues.flatMap((issue) => {
    const path = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') return issue.keys.map((k) => `${path ? `${path}.` : ''}${k}: unknown key`);
    return [`${path || '(top level)'}: ${issue.message}`];
  });
  return lines.length > MAX_ISSUES ? [...lines.slice(0, MAX_ISSUES), `and ${lines.length - MAX_ISSUES} more problems`] : lines;
}

/** True for what JSON can carry as is: the YAML core schema's plain values. */
function isPlainJson(v: unknown, depth = 0): boolean {
  if (depth > 64) return false;
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every((x) => isPlainJson(x, depth + 1));
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) return Object.values(v as object).every((x) => isPlainJson(x, depth + 1));
  return false;
}

/**
 * Parses a configuration file. `null` (no file) and an empty file are the empty configuration.
 * Throws AgentConfigFileError for a file over MAX_CONFIG_FILE_BYTES, invalid YAML (several documents,
 * duplicate keys, too many aliases included), a top level that is not a map, or anything the schema
 * refuses; the error lists each problem with the key's full path.
 */
export function parseAgentConfig(file: Uint8Array | string | null): ParsedAgentConfig {
  if (file === null) return { config: {}, forAgent: {}, unsupportedSections: [] };
  const size = typeof file === 'string' ? Buffer.byteLength(file) : file.byteLength;
  if (size > MAX_CONFIG_FILE_BYTES) throw new AgentConfigFileError([`the file is ${size} bytes; the limit is ${MAX_CONFIG_FILE_BYTES} bytes (128 KiB)`]);
  let text: string;
  try {
    text = typeof file === 'string' ? file : new TextDecoder('utf-8', { fatal: true }).decode(file);
  } catch {
    throw new AgentConfigFileError(['the file is not UTF-8 text']);
  }
  const doc = parseDocument(text, { uniqueKeys: true, resolveKnownTags: false, prettyErrors: true });
  if (doc.errors.length > 0) throw new AgentConfigFileError(doc.errors.slice(0, MAX_ISSUES).map((e) => `invalid YAML: ${e.message.split('\n')[0]!.replace(/:$/, '')}`));
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    throw new AgentConfigFileError([`invalid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  if (raw === null || raw === undefined) return { config: {}, forAgent: {}, unsupportedSections: [] };
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new AgentConfigFileError(['(top level): expected a map of sections such as ci_access, gitops, observability']);
  const result = agentConfigSchema.safeParse(raw);
  if (!result.success) throw new AgentConfigFileError(issueLines(result.error.issues));
  const unsupportedSections = Object.keys(raw).filter((k) => (UNSUPPORTED_SECTIONS as readonly string[]).includes(k));
  const config = result.data;
  for (const k of unsupportedSections) {
    if (!isPlainJson(config[k as (typeof UNSUPPORTED_SECTIONS)[number]])) throw new AgentConfigFileError([`${k}: expected plain YAML values (maps, lists, strings, numbers, booleans)`]);
  }
  const forAgent: AgentConfigDocument = { ...config };
  for (const k of UNSUPPORTED_SECTIONS) delete forAgent[k];
  if (new TextEncoder().encode(JSON.stringify(config)).byteLength > MAX_AGENT_CONFIG_BYTES) {
    throw new AgentConfigFileError([`the configuration expands to more than ${MAX_AGENT_CONFIG_BYTES} bytes (check its YAML aliases)`]);
  }
  return { config, forAgent, unsupportedSections };
}
