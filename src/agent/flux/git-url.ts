/**
 * Which GitLab project a Flux GitRepository follows: its `spec.url` is matched against the GitLab
 * URLs agentk was given (`--flux-gitlab-url`, repeatable). A URL matches a base when the host names
 * are equal (case-insensitive; scheme and port may differ, so `ssh://git@gitlab.example.com:2222/`
 * matches the base `https://gitlab.example.com`) and its path starts with the base's path (a
 * GitLab under a relative URL root); the rest, without a trailing `.git` or `/`, is the project's
 * full path. Schemes: http, https, ssh, and scp-like `git@host:group/project.git`.
 *
 *   projectPathOf('https://gitlab.example.com/group/sub/app.git', [new URL('https://gitlab.example.com')])  // 'group/sub/app'
 */
import { isProjectPath } from '../../protocol/flux.js';

/** Parses the bases given by flags; throws naming the bad value. */
export function parseGitLabUrls(values: readonly string[]): URL[] {
  return values.map((v) => {
    let url: URL;
    try {
      url = new URL(v);
    } catch {
      throw new Error(`not a URL: ${JSON.stringify(v)}`);
    }
    if (!['http:', 'https:', 'ssh:'].includes(url.protocol) || url.hostname === '') throw new Error(`expected an http(s):// or ssh:// URL with a host, got ${JSON.stringify(v)}`);
    return url;
  });
}

function parseGitUrl(raw: string): { host: string; path: string } | null {
  const scp = /^(?:[A-Za-z0-9._~-]+@)?([A-Za-z0-9.-]+):(?!\/\/)(.+)$/.exec(raw);
  if (scp && !/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) return { host: scp[1]!.toLowerCase(), path: `/${scp[2]!}` };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  if (!['http:', 'https:', 'ssh:'].includes(url.protocol)) return null;
  if (url.search !== '' || url.hash !== '') return null;
  let path: string;
  try {
    path = decodeURIComponent(url.pathname);
  } catch {
    return null;
  }
  return { host: url.hostname.toLowerCase(), path };
}

/** The project path `gitUrl` names under one of `bases`, or null when it is not one of theirs. */
export function projectPathOf(gitUrl: unknown, bases: readonly URL[]): string | null {
  if (typeof gitUrl !== 'string' || gitUrl.length > 2048) return null;
  const parsed = parseGitUrl(gitUrl.trim());
  if (!parsed) return null;
  for (const base of bases) {
    if (base.hostname.toLowerCase() !== parsed.host) continue;
    const prefix = base.pathname.replace(/\/+$/, '');
    // scp-like URLs have no relative URL root: their path is the project's.
    const path = parsed.path;
    let rest: string;
    if (prefix !== '' && path.toLowerCase().startsWith(`${prefix.toLowerCase()}/`)) rest = path.slice(prefix.length + 1);
    else if (prefix === '') rest = path.replace(/^\/+/, '');
    else continue;
    rest = rest.replace(/\/+$/, '').replace(/\.git$/i, '');
    if (isProjectPath(rest)) return rest;
  }
  return null;
}
