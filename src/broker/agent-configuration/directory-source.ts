/**
 * Standalone mode: agent configuration files in a local directory, `<config_dir>/<agent-name>/config.yaml`
 * (`standalone.config_dir`). Changes are found by the content's SHA-256; a missing file (or agent
 * folder) is the empty configuration.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentIdentity } from '../auth/types.js';
import { AgentConfigFileError } from './agent-config-file-error.js';
import type { ConfigFile, ConfigSource } from './config-source.js';
import { MAX_CONFIG_FILE_BYTES } from './schema.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export class DirectoryConfigSource implements ConfigSource {
  constructor(private readonly dir: string) {}

  /** The file of an agent. */
  pathOf(agentName: string): string {
    // Names come from kas's own configuration, checked there; this keeps any other caller inside dir.
    if (!DNS_LABEL.test(agentName)) throw new Error(`agent name ${JSON.stringify(agentName)} is not a DNS label`);
    return join(this.dir, agentName, 'config.yaml');
  }

  async read(agent: AgentIdentity, known: string | null | undefined): Promise<ConfigFile | null> {
    const path = this.pathOf(agent.agentName);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return known === null ? null : { commit: null, content: null };
      throw err;
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) {
        const commit = 'not-a-regular-file';
        return commit === known ? null : { commit, content: null, problem: new AgentConfigFileError(['config.yaml is not a regular file']) };
      }
      // One byte more than the limit tells a file at the limit from one over it, without reading a huge file.
      const buf = Buffer.alloc(MAX_CONFIG_FILE_BYTES + 1);
      let size = 0;
      while (size < buf.length) {
        const { bytesRead } = await handle.read(buf, size, buf.length - size, size);
        if (bytesRead === 0) break;
        size += bytesRead;
      }
      const content = buf.subarray(0, size);
      const commit = `sha256:${createHash('sha256').update(content).digest('hex')}`;
      if (commit === known) return null;
      if (size > MAX_CONFIG_FILE_BYTES) {
        return { commit, content: null, problem: new AgentConfigFileError([`the file is more than ${MAX_CONFIG_FILE_BYTES} bytes; the limit is ${MAX_CONFIG_FILE_BYTES} bytes (128 KiB)`]) };
      }
      return { commit, content };
    } finally {
      await handle.close();
    }
  }
}
