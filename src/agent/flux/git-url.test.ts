import { parseGitLabUrls, projectPathOf } from './git-url.js';

describe('mapping GitRepository URLs to GitLab projects', () => {
  const bases = parseGitLabUrls(['https://gitlab.example.com', 'https://example.org/gitlab/']);

  test.each([
    ['https://gitlab.example.com/acme/app.git', 'acme/app'],
    ['https://gitlab.example.com/acme/app', 'acme/app'],
    ['https://gitlab.example.com/acme/app/', 'acme/app'],
    ['https://GitLab.Example.com/Acme/Sub/App.git', 'Acme/Sub/App'],
    ['https://user@gitlab.example.com/acme/app.git', 'acme/app'],
    ['http://gitlab.example.com:8080/acme/app.git', 'acme/app'],
    ['ssh://git@gitlab.example.com/acme/app.git', 'acme/app'],
    ['ssh://git@gitlab.example.com:2222/acme/sub/app.git', 'acme/sub/app'],
    ['git@gitlab.example.com:acme/app.git', 'acme/app'],
    ['https://example.org/gitlab/acme/app.git', 'acme/app'],
  ])('%s → %s', (url, project) => {
    expect(projectPathOf(url, bases)).toBe(project);
  });

  test.each([
    'https://github.com/acme/app.git',
    'https://gitlab.example.com.evil.net/acme/app.git',
    'https://gitlab.example.com/app.git',
    'https://gitlab.example.com/',
    'https://gitlab.example.com/acme/app.git?ref=x',
    'https://gitlab.example.com/acme/../app.git',
    'https://gitlab.example.com/acme/%2e%2e/app',
    'https://example.org/other/acme/app.git',
    'file:///srv/git/acme/app.git',
    'not a url',
    '',
  ])('%s is not followed', (url) => {
    expect(projectPathOf(url, bases)).toBeNull();
  });

  test('non-strings and no bases', () => {
    expect(projectPathOf(42, bases)).toBeNull();
    expect(projectPathOf(undefined, bases)).toBeNull();
    expect(projectPathOf('https://gitlab.example.com/acme/app.git', [])).toBeNull();
  });

  test('bad flag values are named', () => {
    expect(() => parseGitLabUrls(['gitlab.example.com'])).toThrow(/not a URL/);
    expect(() => parseGitLabUrls(['ftp://gitlab.example.com'])).toThrow(/http/);
  });
});
