/**
 * A fake GitLab (the Rails app's side of the kas ⇄ GitLab contract, design/gitlab-contract.md) for
 * kas's tests: an in-process HTTP(S) server on 127.0.0.1, port 0, that answers the REST calls kas makes
 * under `/api/v4` the way GitLab does, keeps the state a test sets up (agents, tokens, projects, users,
 * CI jobs, repository files) and records every call it receives so tests can assert on what kas did.
 *
 * What it serves (paths under `/api/v4`; GitLab's error body `{"message": "..."}` everywhere):
 * - `/internal/kubernetes/*` (JWT in `Gitlab-Kas-Api-Request`, verified as GitLab does: HS256 only, `iss`
 *   `gitlab-kas`, `aud` `gitlab`, `iat`/`nbf`/`exp` present and current within 5 s of clock skew; else
 *   401 `{"message":"KAS JWT authentication invalid"}`):
 *   `GET agent_info` (+ `Authorization: Bearer <agent token>`), `GET project_info?id=`,
 *   `GET verify_project_access?id=` (204, as GitLab), `POST authorize_proxy_user`,
 *   `POST agent_configuration` (204), `POST usage_metrics` (204).
 * - `GET /job/allowed_agents` with `Job-Token` (no JWT).
 * - Repositories, with the repository token (`PRIVATE-TOKEN: <t>` or `Authorization: Bearer <t>`):
 *   `GET|HEAD /projects/:id/repository/files/:path/raw?ref=` (ref optional: the default branch),
 *   `GET|HEAD /projects/:id/repository/files/:path?ref=` (ref required; JSON with base64 content, and the
 *   `X-Gitlab-*` headers), `GET /projects/:id/repository/tree?path=&ref=&recursive=&page=&per_page=`
 *   (offset pagination as GitLab; `pagination=none` with `recursive=true` lists everything at once),
 *   `GET /projects/:id/repository/branches/:branch`, `GET /projects/:id/repository/commits/:sha` (a commit
 *   id, branch or tag name; 404 `{"message":"404 Commit Not Found"}`). `:id` is a numeric id or a URL-encoded full path;
 *   `:path` and `:branch` are single URL-encoded segments (a raw `/` inside them is a 404, as GitLab).
 * - Anything else: 404 `{"message":"404 Not Found"}`; a known path with another method: 405.
 *
 * The repository is a small git model: every {@link FakeGitLab.setFile} / {@link FakeGitLab.deleteFile}
 * makes a new commit on that ref whose id, tree ids and blob ids are real git object ids (a blob id is what
 * `git hash-object` prints). A ref is a branch name, `refs/heads/<name>`, or a commit id (7 to 40 hex
 * digits) of any commit made so far, so old commits stay readable.
 *
 * Concurrency and ownership: everything runs on the test's event loop. The set-up methods may be called at
 * any time, also while kas is calling; each request sees the state at the moment it is handled (after any
 * {@link FakeGitLab.delayNext} delay). The test that starts the fake owns it and must `close()` it.
 */
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import http, { STATUS_CODES } from 'node:http';
import https from 'node:https';
import { decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { generateSelfSignedCertificate, type CertificatePair } from '../../src/shared/tls-cert.js';
import { listenLoopback } from './ports.js';

// ---------------------------------------------------------------------------------------------------
// The JWT of kas → GitLab calls

/** The header kas puts its JWT in (no "Bearer"). */
export const KAS_JWT_HEADER = 'Gitlab-Kas-Api-Request';
/** `iss` of kas's JWT towards GitLab. */
export const KAS_JWT_ISSUER = 'gitlab-kas';
/** `aud` of kas's JWT towards GitLab. */
export const KAS_JWT_AUDIENCE = 'gitlab';
/** GitLab's message for a missing or bad kas JWT (status 401). */
export const KAS_JWT_INVALID_MESSAGE = 'KAS JWT authentication invalid';
/** Clock skew allowed on `iat`, `nbf` and `exp`, in seconds. */
export const JWT_CLOCK_SKEW_SECONDS = 5;

/** The outcome of checking a kas JWT: the claims, or why it was refused (for test failure messages). */
export type KasJwtCheck = { ok: true; claims: JWTPayload } | { ok: false; reason: string };

/**
 * Checks a JWT the way GitLab checks kas's `Gitlab-Kas-Api-Request`: compact form, `alg` exactly HS256 with
 * the shared secret, `iss` = `gitlab-kas`, `aud` = `gitlab` (or an array holding it), `iat`, `nbf` and `exp`
 * present and current within {@link JWT_CLOCK_SKEW_SECONDS}. Stricter than GitLab in one way: GitLab lets a
 * token without time claims through, the contract says kas always sends them, so the fake requires them.
 */
export async function verifyKasJwt(secret: Uint8Array, token: string | undefined, now: Date = new Date()): Promise<KasJwtCheck> {
  if (token === undefined || token === '') return { ok: false, reason: `no ${KAS_JWT_HEADER} header` };
  try {
    const alg = decodeProtectedHeader(token).alg;
    if (alg !== 'HS256') return { ok: false, reason: `alg ${JSON.stringify(alg)} is not HS256` };
    const { payload } = await jwtVerify(token, secret, {
      algorithms: ['HS256'],
      issuer: KAS_JWT_ISSUER,
      audience: KAS_JWT_AUDIENCE,
      clockTolerance: JWT_CLOCK_SKEW_SECONDS,
      requiredClaims: ['iat', 'nbf', 'exp'],
      currentDate: now,
    });
    if ((payload.iat as number) > now.getTime() / 1000 + JWT_CLOCK_SKEW_SECONDS) return { ok: false, reason: '"iat" is in the future' };
    return { ok: true, claims: payload };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
}

// ---------------------------------------------------------------------------------------------------
// JWTs of GitLab → kas calls (for kas's API-listener tests)

/** The host name GitLab puts in `iss` of its JWTs to kas, unless overridden. */
export const GITLAB_TO_KAS_ISSUER = 'gitlab.example.com';
/** `aud` of GitLab's JWTs to kas. */
export const GITLAB_TO_KAS_AUDIENCE = 'gitlab-kas';

/** Claims of a JWT GitLab sends kas (`Authorization: Bearer <JWT>`). */
export interface GitLabToKasClaims {
  iss: string;
  aud: string | string[];
  jti: string;
  iat: number;
  nbf: number;
  exp: number;
  [claim: string]: unknown;
}

/**
 * Changes to {@link gitlabToKasJwt}'s token: claims to replace (a claim set to `undefined` is left out),
 * `alg` for the header (HS256 by default; HS384/HS512 sign with that hash; `none` in any case leaves the
 * signature empty; any other name, e.g. RS256, is signed with HMAC-SHA256 of the key: the
 * algorithm-confusion attack), `key` to sign with instead of the secret, and extra `header` fields.
 */
export type GitLabToKasJwtOverrides = Partial<GitLabToKasClaims> & { alg?: string; key?: Uint8Array; header?: Record<string, unknown> };

/**
 * Signs a compact JWT by hand (so tests can also make the broken ones a JWT library refuses to make).
 * Header `{alg, typ: "JWT", ...header}`; see {@link GitLabToKasJwtOverrides} for `alg`.
 */
export function signJwt(claims: Record<string, unknown>, options: { alg?: string; key?: Uint8Array; header?: Record<string, unknown> } = {}): string {
  const alg = options.alg ?? 'HS256';
  const input = `${base64url(JSON.stringify({ alg, typ: 'JWT', ...options.header }))}.${base64url(JSON.stringify(claims))}`;
  if (alg.toLowerCase() === 'none') return `${input}.`;
  if (options.key === undefined) throw new Error(`signJwt: alg ${alg} needs a key`);
  const hash = alg === 'HS384' ? 'sha384' : alg === 'HS512' ? 'sha512' : 'sha256';
  return `${input}.${createHmac(hash, options.key).update(input).digest('base64url')}`;
}

/**
 * A JWT as GitLab signs its calls to kas: HS256 with the shared secret, `aud` `gitlab-kas`, `iss` the
 * GitLab host name ({@link GITLAB_TO_KAS_ISSUER}), a random `jti`, `iat` now, `nbf` now − 5 s, `exp` now + 60 s.
 */
export function gitlabToKasJwt(secret: Uint8Array, overrides: GitLabToKasJwtOverrides = {}): string {
  const { alg, key, header, ...claimOverrides } = overrides;
  return signJwt({ ...gitlabToKasClaims(), ...claimOverrides }, { alg: alg ?? 'HS256', key: key ?? secret, header });
}

/** A GitLab → kas JWT with `alg: none` and no signature (claims otherwise valid unless overridden). */
export function unsignedJwt(claims: Partial<GitLabToKasClaims> = {}): string {
  return signJwt({ ...gitlabToKasClaims(), ...claims }, { alg: 'none' });
}

/** The attacks of {@link gitlabToKasAttackJwts}. */
export type GitLabToKasJwtAttack =
  | 'algNone'
  | 'algNoneWithSignature'
  | 'wrongSecret'
  | 'expired'
  | 'notYetValid'
  | 'noExpiry'
  | 'wrongAudience'
  | 'noAudience'
  | 'tamperedPayload'
  | 'emptySignature'
  | 'algConfusionRs256'
  | 'algConfusionEs256'
  | 'notAJwt';

/**
 * GitLab → kas tokens that kas's API listener must refuse (each with 401), all made at call time:
 * - `algNone`: `alg: none`, no signature; `algNoneWithSignature`: `alg: none` but an HS256 signature.
 * - `wrongSecret`: HS256 with another 32-byte secret.
 * - `expired`: `exp` 10 min ago; `notYetValid`: `nbf` 5 min ahead; `noExpiry`: no `exp` at all.
 * - `wrongAudience`: `aud` `gitlab` (a token kas made for GitLab, replayed); `noAudience`: no `aud`.
 * - `tamperedPayload`: a valid token whose payload was changed (`exp` + 1 h, `sub` admin), signature kept.
 * - `emptySignature`: HS256 header, valid claims, no signature.
 * - `algConfusionRs256` / `algConfusionEs256`: header RS256 / ES256, "signed" with HMAC-SHA256 of the secret.
 * - `notAJwt`: a random string.
 */
export function gitlabToKasAttackJwts(secret: Uint8Array): Record<GitLabToKasJwtAttack, string> {
  const now = Math.floor(Date.now() / 1000);
  const [header, payload, signature] = gitlabToKasJwt(secret).split('.') as [string, string, string];
  const tampered = { ...(JSON.parse(Buffer.from(payload, 'base64url').toString()) as GitLabToKasClaims), exp: now + 3600, sub: 'admin' };
  return {
    algNone: unsignedJwt(),
    algNoneWithSignature: `${unsignedJwt().slice(0, -1)}.${signature}`,
    wrongSecret: gitlabToKasJwt(secret, { key: randomBytes(32) }),
    expired: gitlabToKasJwt(secret, { iat: now - 660, nbf: now - 665, exp: now - 600 }),
    notYetValid: gitlabToKasJwt(secret, { iat: now, nbf: now + 300, exp: now + 360 }),
    noExpiry: gitlabToKasJwt(secret, { exp: undefined }),
    wrongAudience: gitlabToKasJwt(secret, { aud: KAS_JWT_AUDIENCE }),
    noAudience: gitlabToKasJwt(secret, { aud: undefined }),
    tamperedPayload: `${header}.${base64url(JSON.stringify(tampered))}.${signature}`,
    emptySignature: `${header}.${payload}.`,
    algConfusionRs256: gitlabToKasJwt(secret, { alg: 'RS256' }),
    algConfusionEs256: gitlabToKasJwt(secret, { alg: 'ES256' }),
    notAJwt: randomBytes(24).toString('base64url'),
  };
}

function gitlabToKasClaims(): GitLabToKasClaims {
  const now = Math.floor(Date.now() / 1000);
  return { iss: GITLAB_TO_KAS_ISSUER, aud: GITLAB_TO_KAS_AUDIENCE, jti: randomUUID(), iat: now, nbf: now - 5, exp: now + 60 };
}

function base64url(s: string | Buffer): string {
  return Buffer.from(s).toString('base64url');
}

// ---------------------------------------------------------------------------------------------------
// The fake's API

/** One call the fake received, in arrival order. */
export interface RecordedCall {
  method: string;
  /** The path as received, percent-encoding kept, without the query (e.g. `/api/v4/internal/kubernetes/agent_info`). */
  path: string;
  /** Query parameters (a repeated parameter gives an array). */
  query: Record<string, string | string[]>;
  /** Request headers, names lower-cased (repeated headers joined with ", "). */
  headers: Record<string, string>;
  /** The body parsed as JSON, or null when empty or not JSON (see `rawBody`). */
  body: unknown;
  rawBody: string;
  /** The status answered; 0 while the answer is pending (e.g. delayed). */
  status: number;
  /** For `/api/v4/internal/*`: whether the kas JWT was valid; null for other paths. */
  jwtOk: boolean | null;
  /** Why the JWT was refused (null when valid or not checked). */
  jwtError: string | null;
  /** The valid JWT's claims (null otherwise), e.g. to check that kas makes a fresh token per request. */
  jwtClaims: JWTPayload | null;
  /** `Date.now()` when the request arrived. */
  receivedAt: number;
}

export interface FakeAgent {
  id: number;
  /** A DNS label, as GitLab requires. */
  name: string;
  /** The configuration project. Added (as `root/project-<id>`) if the test has not added it. */
  projectId: number;
  /** Its first token (more with `addAgentToken`). */
  token: string;
  /** Sets the configuration project's default branch. */
  defaultBranch?: string;
}

export interface FakeProject {
  id: number;
  /** `group/subgroup/project`; looked up case-insensitively, as GitLab does. */
  fullPath: string;
  /** Default `main`. */
  defaultBranch?: string;
  /** A public project: every agent may read it (project_info). Default false. */
  public?: boolean;
}

export interface FakeUser {
  id: number;
  username: string;
  /** Personal access tokens (with the k8s_proxy scope) of this user. */
  pat?: string[];
  /** A browser session: the `_gitlab_kas` cookie value and the CSRF token that goes with it. */
  sessionCookie?: { value: string; csrfToken: string };
}

/** `access_as` of an authorize_proxy_user answer. */
export type UserAccessAs =
  | { agent: Record<string, never> }
  | { user: { projects: Array<{ id: number; roles: string[] }>; groups: Array<{ id: number; roles: string[] }> } };

export interface UserAccessAnswer {
  access_as: UserAccessAs;
  /** `agent.config_project.id` of the answer; default the agent's project. */
  configProjectId?: number;
}

export interface FakeCiJob {
  /** The CI job token (`Job-Token` header). */
  token: string;
  jobId: number;
  pipelineId: number;
  projectId: number;
  /** Ids of the project's group and its ancestors. */
  groups: number[];
  user: { id: number; username: string; roles_in_project: string[] };
  environment?: { slug: string; tier: string };
  /** Answered as `allowed_agents[]`: `{id, config_project: {id: configProjectId}, configuration}`. */
  allowedAgents: Array<{ id: number; configProjectId: number; configuration: { default_namespace?: string; access_as?: unknown; [key: string]: unknown } }>;
}

/** Which calls a `failNext`/`delayNext` rule applies to: a path without the `/api/v4` prefix (exact, as sent, query excluded), or a RegExp tested on it. */
export type PathMatcher = string | RegExp;

export interface FakeGitLab {
  /** `http(s)://127.0.0.1:<port>`: kas's `gitlab.address`. */
  readonly url: string;
  /** The self-signed certificate to trust (kas's `gitlab.ca_certificate_file`); null without TLS. */
  readonly caPem: string | null;
  /** The 32-byte shared secret (HMAC key of the JWTs both ways). */
  readonly secret: Buffer;
  /** The secret file kas reads: standard Base64 of `secret` and "\n". */
  readonly secretFileContent: string;
  /** The token kas must present to read repositories (`PRIVATE-TOKEN` or `Authorization: Bearer`). */
  readonly repositoryToken: string;

  /** Adds (or replaces) an agent with one token; adds its configuration project if missing. */
  addAgent(agent: FakeAgent): void;
  /** Another token of an existing agent (e.g. for rotation). */
  addAgentToken(agentId: number, token: string): void;
  /** agent_info (and project_info) with this token then answer 401. */
  revokeAgentToken(token: string): void;
  /** The agent is gone: its tokens get 404 from agent_info, its id 404 from authorize_proxy_user and agent_configuration. */
  deleteAgent(id: number): void;
  /** agent_info and project_info with this agent's tokens answer 403 (the contract's "403"), until called with false. */
  forbidAgent(id: number, forbidden?: boolean): void;
  /** Adds (or replaces the metadata of) a project; its repository starts empty, or is kept. */
  addProject(project: FakeProject): void;
  /** project_info/verify_project_access: this agent may read that project (its own project and public ones need not be added). */
  allowAgentProject(agentId: number, projectId: number): void;
  addUser(user: FakeUser): void;
  /** The PAT then gets 401 from authorize_proxy_user. */
  revokePersonalAccessToken(pat: string): void;
  /** The session cookie then gets 401 from authorize_proxy_user. */
  endSession(cookieValue: string): void;
  /** What authorize_proxy_user answers for this user and agent (null: no access, 403). */
  setUserAccess(agentId: number, userId: number, answer: UserAccessAnswer | null): void;
  addCiJob(job: FakeCiJob): void;
  /** The job token then gets 401 from job/allowed_agents (the job finished). */
  revokeCiJobToken(token: string): void;
  /** Writes a file on a ref in a new commit and returns the commit id. A new ref starts from the default branch's head. The project must have been added. */
  setFile(projectId: number, ref: string, path: string, content: string | Buffer): string;
  /** Deletes a file on a ref in a new commit and returns the commit id; throws if it does not exist there. */
  deleteFile(projectId: number, ref: string, path: string): string;
  /** The head commit id of a branch, or undefined if it has no commits. */
  headCommit(projectId: number, ref: string): string | undefined;
  /** Points a tag at a commit (default: the default branch's head); refs and `commits/:sha` then resolve its name. */
  setTag(projectId: number, name: string, commitId?: string): void;

  /** Every call received, in arrival order. Tests may truncate it (`calls.length = 0`). */
  readonly calls: RecordedCall[];
  /** Bodies of valid `POST agent_configuration` calls (answered 204), in order. */
  readonly agentConfigurations: Array<{ agent_id: unknown; agent_config: unknown }>;
  /** Bodies of valid `POST usage_metrics` calls (answered 204), in order. */
  readonly usageMetrics: unknown[];
  /** Calls matching `path` (see {@link PathMatcher}) answered so far. */
  callsTo(path: PathMatcher): RecordedCall[];
  /**
   * Resolves with the first answered call at index ≥ `fromIndex` (default 0) of `calls` that matches;
   * rejects after `timeoutMs` (default 5000) with a message that says what it waited for.
   */
  waitForCall(match: PathMatcher | ((call: RecordedCall) => boolean), options?: { fromIndex?: number; timeoutMs?: number }): Promise<RecordedCall>;
  /**
   * The next `times` (default 1) calls matching `path`, any method, are answered `status` with
   * `{"message": "<status> <reason>"}` and `headers` (e.g. `Retry-After`), before any authentication.
   * Rules apply in the order they were added.
   */
  failNext(path: PathMatcher, status: number, times?: number, headers?: Record<string, string>): void;
  /** The next `times` (default 1) calls matching `path` wait `ms` before being handled. */
  delayNext(path: PathMatcher, ms: number, times?: number): void;
  /** Stops the server, drops every connection and abandons delayed answers. */
  close(): Promise<void>;
}

export interface FakeGitLabOptions {
  /** Serve HTTPS with a self-signed certificate for 127.0.0.1/localhost (default false). */
  tls?: boolean;
  /** The shared secret (32 bytes; default random). */
  secret?: Buffer;
  /** The repository token (default random). */
  repositoryToken?: string;
}

// ---------------------------------------------------------------------------------------------------
// State

const API_PREFIX = '/api/v4';
const MAX_BODY_BYTES = 10 * 1024 * 1024;
const AGENT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const MSG = {
  notFound: '404 Not Found',
  recordNotFound: '404 Not found',
  unauthorized: '401 Unauthorized',
  forbidden: '403 Forbidden',
} as const;

interface AgentState {
  id: number;
  name: string;
  projectId: number;
  deleted: boolean;
  forbidden: boolean;
}

interface FileState {
  content: Buffer;
  blobId: string;
  lastCommitId: string;
}

interface CommitState {
  id: string;
  shortId: string;
  parentIds: string[];
  files: ReadonlyMap<string, FileState>;
  title: string;
  createdAt: string;
}

interface ProjectState {
  id: number;
  fullPath: string;
  defaultBranch: string;
  public: boolean;
  refs: Map<string, string>;
  commits: Map<string, CommitState>;
}

interface Reply {
  status: number;
  headers?: Record<string, string>;
  /** JSON body, or raw bytes. */
  json?: unknown;
  raw?: Buffer;
}

interface RequestContext {
  method: string;
  headers: http.IncomingHttpHeaders;
  query: URLSearchParams;
  body: unknown;
  rawBody: string;
  /** Route parameters, still percent-encoded. */
  params: Record<string, string>;
  call: RecordedCall;
  /** `http(s)://host` as the client addressed us, for Link headers. */
  origin: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const badRequest = (reason: string) => new HttpError(400, `400 Bad request - ${reason}`);

let certificate: Promise<CertificatePair> | null = null;

/** Starts a fake GitLab on 127.0.0.1, port 0. */
export async function startFakeGitLab(options: FakeGitLabOptions = {}): Promise<FakeGitLab> {
  const secret = options.secret ?? randomBytes(32);
  if (secret.length !== 32) throw new Error(`startFakeGitLab: the secret must be 32 bytes, got ${secret.length}`);
  const repositoryToken = options.repositoryToken ?? `glpat-${randomBytes(15).toString('base64url')}`;

  const agents = new Map<number, AgentState>();
  const agentTokens = new Map<string, { agentId: number; revoked: boolean }>();
  const projects = new Map<number, ProjectState>();
  const agentProjects = new Map<number, Set<number>>();
  const users = new Map<number, FakeUser>();
  const pats = new Map<string, { userId: number; revoked: boolean }>();
  const sessions = new Map<string, { userId: number; csrfToken: string }>();
  const userAccess = new Map<string, UserAccessAnswer>();
  const ciJobs = new Map<string, { job: FakeCiJob; revoked: boolean }>();

  const calls: RecordedCall[] = [];
  const agentConfigurations: Array<{ agent_id: unknown; agent_config: unknown }> = [];
  const usageMetrics: unknown[] = [];
  const failRules: Array<{ match: PathMatcher; status: number; remaining: number; headers: Record<string, string> }> = [];
  const delayRules: Array<{ match: PathMatcher; ms: number; remaining: number }> = [];
  const pendingDelays = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  const waiters = new Set<(call: RecordedCall) => void>();
  let commitCounter = 0;

  // ----- repository model

  function projectOrThrow(projectId: number, what: string): ProjectState {
    const project = projects.get(projectId);
    if (!project) throw new Error(`${what}: project ${projectId} was not added (call addProject or addAgent first)`);
    return project;
  }

  function commitOn(project: ProjectState, ref: string, change: (files: Map<string, FileState>) => string[], title: string): string {
    const headId = project.refs.get(ref) ?? project.refs.get(project.defaultBranch);
    const parent = headId === undefined ? undefined : project.commits.get(headId);
    const files = new Map(parent?.files ?? []);
    const changed = change(files);
    const tree = hashTree(buildDir(files));
    const createdAt = new Date().toISOString();
    const seconds = Math.floor(Date.parse(createdAt) / 1000);
    commitCounter += 1;
    const message = `${title} (fake commit ${commitCounter})\n`;
    const author = `Fake GitLab <fake@gitlab.example.com> ${seconds} +0000`;
    const text = `tree ${tree}\n${parent ? `parent ${parent.id}\n` : ''}author ${author}\ncommitter ${author}\n\n${message}`;
    const id = gitObjectId('commit', Buffer.from(text));
    for (const path of changed) {
      const file = files.get(path);
      if (file) files.set(path, { ...file, lastCommitId: id });
    }
    project.commits.set(id, { id, shortId: id.slice(0, 8), parentIds: parent ? [parent.id] : [], files, title: message.trimEnd(), createdAt });
    project.refs.set(ref, id);
    return id;
  }

  function resolveRef(project: ProjectState, ref: string | null): CommitState | undefined {
    const name = ref === null ? project.defaultBranch : ref.replace(/^refs\/heads\//, '');
    const byName = project.refs.get(name) ?? project.refs.get(`refs/tags/${name.replace(/^refs\/tags\//, '')}`);
    if (byName !== undefined) return project.commits.get(byName);
    if (!/^[0-9a-f]{7,40}$/.test(name)) return undefined;
    const matches = [...project.commits.values()].filter((c) => c.id.startsWith(name));
    return matches.length === 1 ? matches[0] : undefined;
  }

  function findProject(idParam: string): ProjectState | undefined {
    if (/^\d+$/.test(idParam)) return projects.get(Number(idParam));
    const wanted = idParam.toLowerCase();
    return [...projects.values()].find((p) => p.fullPath.toLowerCase() === wanted);
  }

  // ----- authentication helpers

  function requireJwt(ctx: RequestContext): void {
    if (ctx.call.jwtOk !== true) throw new HttpError(401, KAS_JWT_INVALID_MESSAGE);
  }

  function bearer(headers: http.IncomingHttpHeaders): string | undefined {
    const m = /^Bearer (.+)$/i.exec(headers.authorization ?? '');
    return m?.[1];
  }

  function requireAgent(ctx: RequestContext): AgentState {
    const token = bearer(ctx.headers);
    const entry = token === undefined ? undefined : agentTokens.get(token);
    if (!entry || entry.revoked) throw new HttpError(401, MSG.unauthorized);
    const agent = agents.get(entry.agentId);
    if (!agent || agent.deleted) throw new HttpError(404, MSG.recordNotFound);
    if (agent.forbidden) throw new HttpError(403, MSG.forbidden);
    return agent;
  }

  function requireRepositoryToken(ctx: RequestContext): void {
    const token = firstHeader(ctx.headers['private-token']) ?? bearer(ctx.headers);
    if (token !== repositoryToken) throw new HttpError(401, MSG.unauthorized);
  }

  function repositoryProject(ctx: RequestContext): ProjectState {
    requireRepositoryToken(ctx);
    const project = findProject(decodeSegment(ctx.params.id ?? ''));
    if (!project) throw new HttpError(404, '404 Project Not Found');
    return project;
  }

  // ----- handlers

  function projectInfo(project: ProjectState) {
    const hashed = createHash('sha256').update(String(project.id)).digest('hex');
    return {
      project_id: project.id,
      gitaly_info: { address: 'unix:/var/opt/gitlab/gitaly/gitaly.socket', token: '', features: {} },
      gitaly_repository: {
        storage_name: 'default',
        relative_path: `@hashed/${hashed.slice(0, 2)}/${hashed.slice(2, 4)}/${hashed}.git`,
        git_object_directory: '',
        git_alternate_object_directories: [],
        gl_repository: `project-${project.id}`,
        gl_project_path: project.fullPath,
      },
      default_branch: project.defaultBranch,
    };
  }

  function agentInfo(ctx: RequestContext): Reply {
    requireJwt(ctx);
    const agent = requireAgent(ctx);
    const project = projectOrThrow(agent.projectId, 'agent_info');
    const { project_id, ...rest } = projectInfo(project);
    return { status: 200, json: { project_id, agent_id: agent.id, agent_name: agent.name, ...rest } };
  }

  function accessibleProject(ctx: RequestContext): ProjectState {
    requireJwt(ctx);
    const agent = requireAgent(ctx);
    const id = ctx.query.get('id');
    if (id === null || id === '') throw badRequest('id is missing');
    const project = findProject(id);
    if (!project) throw new HttpError(404, '404 Project Not Found');
    const allowed = project.public || project.id === agent.projectId || (agentProjects.get(agent.id)?.has(project.id) ?? false);
    if (!allowed) throw new HttpError(404, MSG.notFound);
    return project;
  }

  function verifyProjectAccess(ctx: RequestContext): Reply {
    accessibleProject(ctx);
    return { status: 204 };
  }

  function authorizeProxyUser(ctx: RequestContext): Reply {
    requireJwt(ctx);
    const body = jsonObjectBody(ctx);
    const agentId = integerParam(body, 'agent_id');
    const accessType = body.access_type;
    if (accessType === undefined) throw badRequest('access_type is missing');
    if (accessType !== 'personal_access_token' && accessType !== 'session_cookie') throw badRequest('access_type does not have a valid value');
    const accessKey = body.access_key;
    if (accessKey === undefined) throw badRequest('access_key is missing');
    if (typeof accessKey !== 'string') throw badRequest('access_key is invalid');
    let userId: number;
    if (accessType === 'session_cookie') {
      const csrf = body.csrf_token;
      if (csrf === undefined) throw badRequest('csrf_token is missing');
      if (typeof csrf !== 'string') throw badRequest('csrf_token is invalid');
      if (csrf === '') throw badRequest('csrf_token is empty');
      const session = sessions.get(accessKey);
      if (!session) throw new HttpError(401, `${MSG.unauthorized} - Invalid session`);
      if (session.csrfToken !== csrf) throw new HttpError(401, `${MSG.unauthorized} - CSRF token does not match`);
      userId = session.userId;
    } else {
      const pat = pats.get(accessKey);
      if (!pat || pat.revoked) throw new HttpError(401, MSG.unauthorized);
      userId = pat.userId;
    }
    const user = users.get(userId);
    if (!user) throw new HttpError(401, MSG.unauthorized);
    const agent = agents.get(agentId);
    if (!agent || agent.deleted) throw new HttpError(404, MSG.recordNotFound);
    const access = userAccess.get(`${agent.id}:${user.id}`);
    if (!access) throw new HttpError(403, MSG.forbidden);
    return {
      status: 200,
      json: {
        agent: { id: agent.id, config_project: { id: access.configProjectId ?? agent.projectId } },
        user: { id: user.id, username: user.username },
        access_as: access.access_as,
      },
    };
  }

  function allowedAgents(ctx: RequestContext): Reply {
    const token = firstHeader(ctx.headers['job-token']);
    const entry = token === undefined ? undefined : ciJobs.get(token);
    if (!entry || entry.revoked) throw new HttpError(401, MSG.unauthorized);
    const { job } = entry;
    return {
      status: 200,
      json: {
        allowed_agents: job.allowedAgents.map((a) => ({ id: a.id, config_project: { id: a.configProjectId }, configuration: a.configuration })),
        job: { id: job.jobId },
        pipeline: { id: job.pipelineId },
        project: { id: job.projectId, groups: job.groups.map((id) => ({ id })) },
        user: { id: job.user.id, username: job.user.username, roles_in_project: job.user.roles_in_project },
        ...(job.environment ? { environment: { slug: job.environment.slug, tier: job.environment.tier } } : {}),
      },
    };
  }

  function agentConfiguration(ctx: RequestContext): Reply {
    requireJwt(ctx);
    const body = jsonObjectBody(ctx);
    const agentId = integerParam(body, 'agent_id');
    const config = body.agent_config;
    if (config === undefined) throw badRequest('agent_config is missing');
    if (!isJsonDocument(config)) throw badRequest('agent_config is invalid');
    const agent = agents.get(agentId);
    if (!agent || agent.deleted) throw new HttpError(404, MSG.recordNotFound);
    agentConfigurations.push({ agent_id: body.agent_id, agent_config: config });
    return { status: 204 };
  }

  function usageMetricsHandler(ctx: RequestContext): Reply {
    requireJwt(ctx);
    const body = jsonObjectBody(ctx);
    if (body.counters !== undefined) {
      if (!isPlainObject(body.counters)) throw badRequest('counters is invalid');
      for (const [name, value] of Object.entries(body.counters)) {
        const n = coerceInteger(value);
        if (n === undefined) throw badRequest(`counters[${name}] is invalid`);
        if (n < 0) throw badRequest(`counters[${name}] must not be negative`);
      }
    }
    if (body.unique_counters !== undefined) {
      if (!isPlainObject(body.unique_counters)) throw badRequest('unique_counters is invalid');
      for (const [name, value] of Object.entries(body.unique_counters)) {
        if (!Array.isArray(value) || value.some((v) => coerceInteger(v) === undefined)) throw badRequest(`unique_counters[${name}] is invalid`);
      }
    }
    usageMetrics.push(body);
    return { status: 204 };
  }

  function fileAt(ctx: RequestContext, refRequired: boolean): { commit: CommitState; path: string; file: FileState; ref: string } {
    const project = repositoryProject(ctx);
    const ref = ctx.query.get('ref');
    if (ref === null && refRequired) throw badRequest('ref is missing');
    if (ref === '') throw badRequest('ref is empty');
    const path = decodeSegment(ctx.params.file ?? '').replace(/^\/+/, '');
    if (path === '') throw badRequest('file_path is empty');
    const commit = resolveRef(project, ref);
    if (!commit) throw new HttpError(404, '404 Commit Not Found');
    const file = commit.files.get(path);
    if (!file) throw new HttpError(404, '404 File Not Found');
    return { commit, path, file, ref: ref ?? '' };
  }

  function blobData(f: { commit: CommitState; path: string; file: FileState; ref: string }) {
    return {
      file_name: f.path.slice(f.path.lastIndexOf('/') + 1),
      file_path: f.path,
      size: f.file.content.length,
      encoding: 'base64',
      content_sha256: createHash('sha256').update(f.file.content).digest('hex'),
      ref: f.ref,
      blob_id: f.file.blobId,
      commit_id: f.commit.id,
      last_commit_id: f.file.lastCommitId,
      execute_filemode: false,
    };
  }

  function fileHeaders(data: ReturnType<typeof blobData>): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(data)) {
      headers[`X-Gitlab-${key.split('_').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('-')}`] = String(value);
    }
    return headers;
  }

  function rawFile(ctx: RequestContext): Reply {
    const f = fileAt(ctx, false);
    return {
      status: 200,
      headers: {
        'Content-Type': 'text/plain; charset=utf-8',
        'Cache-Control': 'no-cache, no-store',
        Pragma: 'no-cache',
        Expires: 'Fri, 01 Jan 1990 00:00:00 GMT',
        ...fileHeaders(blobData(f)),
      },
      raw: f.file.content,
    };
  }

  function fileMetadata(ctx: RequestContext): Reply {
    const f = fileAt(ctx, true);
    const data = blobData(f);
    return { status: 200, headers: fileHeaders(data), json: { ...data, content: f.file.content.toString('base64') } };
  }

  function tree(ctx: RequestContext): Reply {
    const project = repositoryProject(ctx);
    const recursive = booleanParam(ctx.query, 'recursive');
    const pagination = ctx.query.get('pagination') ?? 'legacy';
    if (!['legacy', 'keyset', 'none'].includes(pagination)) throw badRequest('pagination does not have a valid value');
    if (pagination === 'keyset') throw badRequest('pagination=keyset is not implemented by the fake GitLab');
    if (pagination === 'none' && !recursive) throw badRequest('pagination cannot be "none" unless "recursive" is true');
    const ref = ctx.query.get('ref');
    if (ref === '') throw badRequest('ref is empty');
    const commit = resolveRef(project, ref);
    if (!commit) throw new HttpError(404, '404 Tree Not Found');
    const path = (ctx.query.get('path') ?? '').replace(/^\/+|\/+$/g, '');
    const root = buildDir(commit.files);
    const dir = path === '' ? root : findDir(root, path);
    if (!dir) throw new HttpError(404, '404 Tree Not Found');
    const entries = listTree(dir, recursive);
    if (pagination === 'none') return { status: 200, json: entries };
    const page = positiveIntegerParam(ctx.query, 'page', 1);
    const perPage = Math.min(positiveIntegerParam(ctx.query, 'per_page', 20), 100);
    const totalPages = Math.max(1, Math.ceil(entries.length / perPage));
    const pageUrl = (p: number) => {
      const q = new URLSearchParams(ctx.query);
      q.set('page', String(p));
      q.set('per_page', String(perPage));
      return `<${ctx.origin}${ctx.call.path}?${q.toString()}>`;
    };
    const links = [
      ...(page > 1 ? [`${pageUrl(page - 1)}; rel="prev"`] : []),
      ...(page < totalPages ? [`${pageUrl(page + 1)}; rel="next"`] : []),
      `${pageUrl(1)}; rel="first"`,
      `${pageUrl(totalPages)}; rel="last"`,
    ];
    return {
      status: 200,
      headers: {
        'X-Page': String(page),
        'X-Per-Page': String(perPage),
        'X-Total': String(entries.length),
        'X-Total-Pages': String(totalPages),
        'X-Next-Page': page < totalPages ? String(page + 1) : '',
        'X-Prev-Page': page > 1 ? String(page - 1) : '',
        Link: links.join(', '),
      },
      json: entries.slice((page - 1) * perPage, page * perPage),
    };
  }

  function commitJson(ctx: RequestContext, project: ProjectState, commit: CommitState) {
    return {
      id: commit.id,
      short_id: commit.shortId,
      created_at: commit.createdAt,
      parent_ids: commit.parentIds,
      title: commit.title,
      message: `${commit.title}\n`,
      author_name: 'Fake GitLab',
      author_email: 'fake@gitlab.example.com',
      authored_date: commit.createdAt,
      committer_name: 'Fake GitLab',
      committer_email: 'fake@gitlab.example.com',
      committed_date: commit.createdAt,
      trailers: {},
      extended_trailers: {},
      web_url: `${ctx.origin}/${project.fullPath}/-/commit/${commit.id}`,
    };
  }

  /** `GET /projects/:id/repository/commits/:sha`: a commit by id, branch or tag name. */
  function commitByRef(ctx: RequestContext): Reply {
    const project = repositoryProject(ctx);
    const ref = decodeSegment(ctx.params.sha ?? '');
    const commit = resolveRef(project, ref);
    if (!commit) throw new HttpError(404, '404 Commit Not Found');
    return { status: 200, json: { ...commitJson(ctx, project, commit), stats: { additions: 0, deletions: 0, total: 0 }, status: null, project_id: project.id, last_pipeline: null } };
  }

  function branch(ctx: RequestContext): Reply {
    const project = repositoryProject(ctx);
    const name = decodeSegment(ctx.params.branch ?? '');
    const headId = project.refs.get(name);
    const commit = headId === undefined ? undefined : project.commits.get(headId);
    if (!commit) throw new HttpError(404, '404 Branch Not Found');
    const webBase = `${ctx.origin}/${project.fullPath}`;
    return {
      status: 200,
      json: {
        name,
        commit: {
          id: commit.id,
          short_id: commit.shortId,
          created_at: commit.createdAt,
          parent_ids: commit.parentIds,
          title: commit.title,
          message: `${commit.title}\n`,
          author_name: 'Fake GitLab',
          author_email: 'fake@gitlab.example.com',
          authored_date: commit.createdAt,
          committer_name: 'Fake GitLab',
          committer_email: 'fake@gitlab.example.com',
          committed_date: commit.createdAt,
          trailers: {},
          extended_trailers: {},
          web_url: `${webBase}/-/commit/${commit.id}`,
        },
        merged: false,
        protected: name === project.defaultBranch,
        developers_can_push: false,
        developers_can_merge: false,
        can_push: true,
        default: name === project.defaultBranch,
        web_url: `${webBase}/-/tree/${encodeURIComponent(name)}`,
      },
    };
  }

  const routes: Array<{ pattern: string[]; methods: string[]; handle: (ctx: RequestContext) => Reply }> = [
    { pattern: ['internal', 'kubernetes', 'agent_info'], methods: ['GET'], handle: agentInfo },
    { pattern: ['internal', 'kubernetes', 'project_info'], methods: ['GET'], handle: (ctx) => ({ status: 200, json: projectInfo(accessibleProject(ctx)) }) },
    { pattern: ['internal', 'kubernetes', 'verify_project_access'], methods: ['GET'], handle: verifyProjectAccess },
    { pattern: ['internal', 'kubernetes', 'authorize_proxy_user'], methods: ['POST'], handle: authorizeProxyUser },
    { pattern: ['internal', 'kubernetes', 'agent_configuration'], methods: ['POST'], handle: agentConfiguration },
    { pattern: ['internal', 'kubernetes', 'usage_metrics'], methods: ['POST'], handle: usageMetricsHandler },
    { pattern: ['job', 'allowed_agents'], methods: ['GET'], handle: allowedAgents },
    { pattern: ['projects', ':id', 'repository', 'files', ':file', 'raw'], methods: ['GET'], handle: rawFile },
    { pattern: ['projects', ':id', 'repository', 'files', ':file'], methods: ['GET', 'HEAD'], handle: fileMetadata },
    { pattern: ['projects', ':id', 'repository', 'tree'], methods: ['GET'], handle: tree },
    { pattern: ['projects', ':id', 'repository', 'branches', ':branch'], methods: ['GET'], handle: branch },
    { pattern: ['projects', ':id', 'repository', 'commits', ':sha'], methods: ['GET'], handle: commitByRef },
  ];

  function route(ctx: RequestContext, subPath: string): Reply {
    if (subPath === '') return { status: 404, json: { message: MSG.notFound } };
    const segments = subPath.replace(/^\//, '').replace(/\/$/, '').split('/');
    for (const r of routes) {
      if (r.pattern.length !== segments.length) continue;
      const params: Record<string, string> = {};
      const matches = r.pattern.every((p, i) => {
        const seg = segments[i] ?? '';
        if (p.startsWith(':')) {
          params[p.slice(1)] = seg;
          return seg !== '';
        }
        return p === seg;
      });
      if (!matches) continue;
      const methods = r.methods.includes('GET') ? [...new Set([...r.methods, 'HEAD'])] : r.methods;
      if (!methods.includes(ctx.method)) return { status: 405, headers: { Allow: methods.join(', ') }, json: { message: '405 Method Not Allowed' } };
      try {
        return r.handle({ ...ctx, params });
      } catch (err) {
        if (err instanceof HttpError) return { status: err.status, json: { message: err.message } };
        throw err;
      }
    }
    return { status: 404, json: { message: MSG.notFound } };
  }

  // ----- failure injection and recording

  const subPathOf = (path: string) => (path === API_PREFIX || path.startsWith(`${API_PREFIX}/`) ? path.slice(API_PREFIX.length) : path);
  const normalizeMatch = (m: PathMatcher): PathMatcher => (typeof m === 'string' ? subPathOf(m) : m);
  const matches = (m: PathMatcher, path: string) => {
    const sub = subPathOf(path);
    return typeof m === 'string' ? m === sub : m.test(sub);
  };

  function takeRule<T extends { match: PathMatcher; remaining: number }>(rules: T[], path: string): T | undefined {
    const i = rules.findIndex((r) => matches(r.match, path));
    if (i < 0) return undefined;
    const rule = rules[i]!;
    rule.remaining -= 1;
    if (rule.remaining <= 0) rules.splice(i, 1);
    return rule;
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = { timer: setTimeout(() => done(), ms), resolve: () => done() };
      function done() {
        clearTimeout(entry.timer);
        pendingDelays.delete(entry);
        resolve();
      }
      pendingDelays.add(entry);
    });
  }

  function send(res: http.ServerResponse, call: RecordedCall, reply: Reply): void {
    call.status = reply.status;
    for (const w of [...waiters]) w(call);
    if (res.destroyed || res.writableEnded) return;
    const body = reply.raw ?? (reply.json === undefined ? undefined : Buffer.from(JSON.stringify(reply.json)));
    const headers: Record<string, string> = { ...reply.headers };
    if (reply.json !== undefined && !headers['Content-Type']) headers['Content-Type'] = 'application/json';
    if (body !== undefined) headers['Content-Length'] = String(body.length);
    res.writeHead(reply.status, headers);
    res.end(body);
  }

  async function onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.on('error', () => undefined);
    const receivedAt = Date.now();
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : target.slice(q + 1));
    const { raw, tooLarge } = await readBody(req);
    const rawBody = raw.toString('utf8');
    const call: RecordedCall = {
      method: req.method ?? 'GET',
      path,
      query: queryRecord(query),
      headers: headerRecord(req.headers),
      body: parseJson(rawBody),
      rawBody,
      status: 0,
      jwtOk: null,
      jwtError: null,
      jwtClaims: null,
      receivedAt,
    };
    calls.push(call);
    const subPath = subPathOf(path);
    if (path.startsWith(`${API_PREFIX}/internal/`)) {
      const check = await verifyKasJwt(secret, firstHeader(req.headers[KAS_JWT_HEADER.toLowerCase()]));
      call.jwtOk = check.ok;
      if (check.ok) call.jwtClaims = check.claims;
      else call.jwtError = check.reason;
    }
    const delay = takeRule(delayRules, path);
    if (delay) await sleep(delay.ms);
    const fail = takeRule(failRules, path);
    if (fail) return send(res, call, { status: fail.status, headers: fail.headers, json: { message: `${fail.status} ${STATUS_CODES[fail.status] ?? 'Error'}` } });
    if (tooLarge) return send(res, call, { status: 413, json: { message: '413 Request Entity Too Large' } });
    if (!path.startsWith(`${API_PREFIX}/`)) return send(res, call, { status: 404, json: { message: MSG.notFound } });
    const origin = `${cert ? 'https' : 'http'}://${req.headers.host ?? '127.0.0.1'}`;
    let reply: Reply;
    try {
      reply = route({ method: call.method, headers: req.headers, query, body: call.body, rawBody, params: {}, call, origin }, subPath);
    } catch (err) {
      reply = err instanceof HttpError ? { status: err.status, json: { message: err.message } } : { status: 500, json: { message: `500 Internal Server Error - ${String(err)}` } };
    }
    send(res, call, reply);
  }

  const cert = options.tls ? await (certificate ??= generateSelfSignedCertificate()) : null;
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => void onRequest(req, res);
  const server: http.Server | https.Server = cert ? https.createServer({ cert: cert.cert, key: cert.key }, listener) : http.createServer(listener);
  const port = await listenLoopback(server);

  // ----- the object handed to the test

  const fake: FakeGitLab = {
    url: `${cert ? 'https' : 'http'}://127.0.0.1:${port}`,
    caPem: cert?.cert ?? null,
    secret,
    secretFileContent: `${secret.toString('base64')}\n`,
    repositoryToken,
    calls,
    agentConfigurations,
    usageMetrics,

    addAgent(a) {
      if (!AGENT_NAME.test(a.name) || a.name.length > 63) throw new Error(`addAgent: ${JSON.stringify(a.name)} is not a valid agent name (a DNS label)`);
      if (!projects.has(a.projectId)) fake.addProject({ id: a.projectId, fullPath: `root/project-${a.projectId}`, defaultBranch: a.defaultBranch });
      else if (a.defaultBranch !== undefined) projects.get(a.projectId)!.defaultBranch = a.defaultBranch;
      agents.set(a.id, { id: a.id, name: a.name, projectId: a.projectId, deleted: false, forbidden: false });
      agentTokens.set(a.token, { agentId: a.id, revoked: false });
    },
    addAgentToken(agentId, token) {
      if (!agents.has(agentId)) throw new Error(`addAgentToken: agent ${agentId} was not added`);
      agentTokens.set(token, { agentId, revoked: false });
    },
    revokeAgentToken(token) {
      const entry = agentTokens.get(token);
      if (!entry) throw new Error('revokeAgentToken: unknown token');
      entry.revoked = true;
    },
    deleteAgent(id) {
      const agent = agents.get(id);
      if (!agent) throw new Error(`deleteAgent: agent ${id} was not added`);
      agent.deleted = true;
    },
    forbidAgent(id, forbidden = true) {
      const agent = agents.get(id);
      if (!agent) throw new Error(`forbidAgent: agent ${id} was not added`);
      agent.forbidden = forbidden;
    },
    addProject(p) {
      const existing = projects.get(p.id);
      projects.set(p.id, {
        id: p.id,
        fullPath: p.fullPath,
        defaultBranch: p.defaultBranch ?? 'main',
        public: p.public ?? false,
        refs: existing?.refs ?? new Map(),
        commits: existing?.commits ?? new Map(),
      });
    },
    allowAgentProject(agentId, projectId) {
      const set = agentProjects.get(agentId) ?? new Set<number>();
      set.add(projectId);
      agentProjects.set(agentId, set);
    },
    addUser(u) {
      users.set(u.id, { ...u });
      for (const pat of u.pat ?? []) pats.set(pat, { userId: u.id, revoked: false });
      if (u.sessionCookie) sessions.set(u.sessionCookie.value, { userId: u.id, csrfToken: u.sessionCookie.csrfToken });
    },
    revokePersonalAccessToken(pat) {
      const entry = pats.get(pat);
      if (!entry) throw new Error('revokePersonalAccessToken: unknown token');
      entry.revoked = true;
    },
    endSession(cookieValue) {
      if (!sessions.delete(cookieValue)) throw new Error('endSession: unknown session cookie');
    },
    setUserAccess(agentId, userId, answer) {
      if (answer === null) userAccess.delete(`${agentId}:${userId}`);
      else userAccess.set(`${agentId}:${userId}`, answer);
    },
    addCiJob(job) {
      ciJobs.set(job.token, { job, revoked: false });
    },
    revokeCiJobToken(token) {
      const entry = ciJobs.get(token);
      if (!entry) throw new Error('revokeCiJobToken: unknown token');
      entry.revoked = true;
    },
    setFile(projectId, ref, path, content) {
      const project = projectOrThrow(projectId, 'setFile');
      const clean = path.replace(/^\/+/, '');
      const bytes = Buffer.isBuffer(content) ? Buffer.from(content) : Buffer.from(content, 'utf8');
      return commitOn(
        project,
        ref,
        (files) => {
          files.set(clean, { content: bytes, blobId: gitObjectId('blob', bytes), lastCommitId: '' });
          return [clean];
        },
        `Update ${clean}`,
      );
    },
    deleteFile(projectId, ref, path) {
      const project = projectOrThrow(projectId, 'deleteFile');
      const clean = path.replace(/^\/+/, '');
      if (!resolveRef(project, ref)?.files.has(clean)) throw new Error(`deleteFile: ${clean} does not exist on ${ref} of project ${projectId}`);
      return commitOn(
        project,
        ref,
        (files) => {
          files.delete(clean);
          return [];
        },
        `Delete ${clean}`,
      );
    },
    headCommit(projectId, ref) {
      return projects.get(projectId)?.refs.get(ref);
    },
    setTag(projectId, name, commitId) {
      const project = projectOrThrow(projectId, 'setTag');
      const target = commitId ?? project.refs.get(project.defaultBranch);
      if (target === undefined || !project.commits.has(target)) throw new Error(`setTag: no commit ${String(commitId)} in project ${projectId}`);
      project.refs.set(`refs/tags/${name}`, target);
    },

    callsTo(path) {
      const m = normalizeMatch(path);
      return calls.filter((c) => c.status !== 0 && matches(m, c.path));
    },
    waitForCall(match, opts = {}) {
      const fromIndex = opts.fromIndex ?? 0;
      const timeoutMs = opts.timeoutMs ?? 5000;
      const m = typeof match === 'function' ? null : normalizeMatch(match);
      const test = (c: RecordedCall) => c.status !== 0 && (m === null ? (match as (call: RecordedCall) => boolean)(c) : matches(m, c.path));
      const found = calls.slice(fromIndex).find(test);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = (c: RecordedCall) => {
          if (calls.indexOf(c) < fromIndex || !test(c)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(c);
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          const seen = calls.slice(fromIndex).map((c) => `${c.method} ${c.path} → ${c.status}`);
          reject(new Error(`fake GitLab: no call matching ${String(match)} within ${timeoutMs} ms; calls seen: ${seen.length ? seen.join('; ') : 'none'}`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    failNext(path, status, times = 1, headers = {}) {
      failRules.push({ match: normalizeMatch(path), status, remaining: times, headers });
    },
    delayNext(path, ms, times = 1) {
      delayRules.push({ match: normalizeMatch(path), ms, remaining: times });
    },
    async close() {
      for (const d of [...pendingDelays]) d.resolve();
      for (const w of [...waiters]) waiters.delete(w);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return fake;
}

// ---------------------------------------------------------------------------------------------------
// Helpers

/** The id git gives an object: SHA-1 of `<type> <size>\0<content>`. */
function gitObjectId(type: 'blob' | 'tree' | 'commit', content: Buffer): string {
  return createHash('sha1').update(`${type} ${content.length}\0`).update(content).digest('hex');
}

interface DirNode {
  path: string;
  dirs: Map<string, DirNode>;
  blobs: Map<string, FileState>;
  id?: string;
}

function buildDir(files: ReadonlyMap<string, FileState>): DirNode {
  const root: DirNode = { path: '', dirs: new Map(), blobs: new Map() };
  for (const [path, file] of files) {
    const parts = path.split('/');
    let node = root;
    for (const part of parts.slice(0, -1)) {
      let next = node.dirs.get(part);
      if (!next) {
        next = { path: node.path === '' ? part : `${node.path}/${part}`, dirs: new Map(), blobs: new Map() };
        node.dirs.set(part, next);
      }
      node = next;
    }
    node.blobs.set(parts[parts.length - 1]!, file);
  }
  return root;
}

/** A real git tree id (entries sorted as git does: a directory compares as "name/"). */
function hashTree(node: DirNode): string {
  if (node.id !== undefined) return node.id;
  const entries: Array<{ sortKey: string; bytes: Buffer }> = [];
  for (const [name, dir] of node.dirs) entries.push({ sortKey: `${name}/`, bytes: Buffer.concat([Buffer.from(`40000 ${name}\0`), Buffer.from(hashTree(dir), 'hex')]) });
  for (const [name, file] of node.blobs) entries.push({ sortKey: name, bytes: Buffer.concat([Buffer.from(`100644 ${name}\0`), Buffer.from(file.blobId, 'hex')]) });
  entries.sort((a, b) => Buffer.compare(Buffer.from(a.sortKey), Buffer.from(b.sortKey)));
  node.id = gitObjectId('tree', Buffer.concat(entries.map((e) => e.bytes)));
  return node.id;
}

function findDir(root: DirNode, path: string): DirNode | undefined {
  let node: DirNode | undefined = root;
  for (const part of path.split('/')) node = node?.dirs.get(part);
  return node;
}

/** Entries as GitLab lists them (`tree.sorted_entries`): directories first, then files, each in path order. */
function listTree(dir: DirNode, recursive: boolean): Array<{ id: string; name: string; type: 'tree' | 'blob'; path: string; mode: string }> {
  const trees: Array<{ id: string; name: string; type: 'tree'; path: string; mode: string }> = [];
  const blobs: Array<{ id: string; name: string; type: 'blob'; path: string; mode: string }> = [];
  const walk = (node: DirNode) => {
    for (const [name, child] of node.dirs) {
      trees.push({ id: hashTree(child), name, type: 'tree', path: child.path, mode: '040000' });
      if (recursive) walk(child);
    }
    for (const [name, file] of node.blobs) blobs.push({ id: file.blobId, name, type: 'blob', path: node.path === '' ? name : `${node.path}/${name}`, mode: '100644' });
  };
  walk(dir);
  const byPath = (a: { path: string }, b: { path: string }) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  return [...trees.sort(byPath), ...blobs.sort(byPath)];
}

function readBody(req: http.IncomingMessage): Promise<{ raw: Buffer; tooLarge: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve({ raw: Buffer.concat(chunks), tooLarge }));
    req.on('error', () => resolve({ raw: Buffer.concat(chunks), tooLarge }));
  });
}

function parseJson(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The JSON object body of a POST: GitLab (Grape) reads params from a JSON body only with a JSON content type. */
function jsonObjectBody(ctx: RequestContext): Record<string, unknown> {
  const type = firstHeader(ctx.headers['content-type']) ?? '';
  if (ctx.rawBody !== '' && !/^application\/json\b/i.test(type)) throw badRequest(`the body must be JSON with Content-Type: application/json, got ${JSON.stringify(type)}`);
  if (ctx.rawBody === '') return {};
  if (!isPlainObject(ctx.body)) throw badRequest('the body is not a JSON object');
  return ctx.body;
}

/** Grape's Integer coercion: a JSON integer or a string of decimal digits (how GitLab's kas sends 64-bit ids). */
function coerceInteger(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) ? v : undefined;
  if (typeof v === 'string' && /^[+-]?\d+$/.test(v)) return Number(v);
  return undefined;
}

function integerParam(body: Record<string, unknown>, name: string): number {
  const v = body[name];
  if (v === undefined || v === null) throw badRequest(`${name} is missing`);
  const n = coerceInteger(v);
  if (n === undefined) throw badRequest(`${name} is invalid`);
  return n;
}

/** Grape's JSON type: an object or array, or a string holding one. */
function isJsonDocument(v: unknown): boolean {
  if (typeof v === 'string') {
    const parsed = parseJson(v);
    return typeof parsed === 'object' && parsed !== null;
  }
  return typeof v === 'object' && v !== null;
}

function booleanParam(query: URLSearchParams, name: string): boolean {
  const v = query.get(name);
  if (v === null) return false;
  if (/^(true|1)$/i.test(v)) return true;
  if (/^(false|0)$/i.test(v)) return false;
  throw badRequest(`${name} is invalid`);
}

function positiveIntegerParam(query: URLSearchParams, name: string, fallback: number): number {
  const v = query.get(name);
  if (v === null || v === '') return fallback;
  if (!/^\d+$/.test(v)) throw badRequest(`${name} is invalid`);
  return Math.max(1, Number(v));
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw badRequest(`${JSON.stringify(segment)} is not validly percent-encoded`);
  }
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function headerRecord(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
  return out;
}

function queryRecord(query: URLSearchParams): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const key of new Set(query.keys())) {
    const all = query.getAll(key);
    out[key] = all.length === 1 ? all[0]! : all;
  }
  return out;
}
