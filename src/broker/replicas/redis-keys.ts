/** Names of the Redis keys and channels of one kas installation (docs/replicas.md lists them). */
export class RedisKeys {
  constructor(private readonly prefix: string) {}

  key(...parts: Array<string | number>): string {
    return [this.prefix, ...parts].join(':');
  }

  get channelRegistered(): string {
    return this.key('tunnel_registered');
  }

  get channelGitPush(): string {
    return this.key('git_push');
  }

  /** Git pushes with the project's full path (JSON `{"id", "full_path"}`), next to channelGitPush's bare ids. */
  get channelGitPushEvent(): string {
    return this.key('git_push_event');
  }
}
