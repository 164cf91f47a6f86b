/** Standalone mode (no gitlab section): agents and proxy users from local files. Nothing to run. */
import { AUTH } from '../auth/service.js';
import { gitlabConfig } from '../gitlab/config.js';
import { defineModule } from '../module.js';
import { standaloneConfig } from './config.js';
import { StandaloneAuth } from './standalone-auth.js';

export const standaloneModule = defineModule({
  name: 'standalone',
  owns: [standaloneConfig],
  reads: [gitlabConfig],
  create(ctx) {
    if (ctx.config.gitlab) return null;
    const auth = new StandaloneAuth(ctx.config.standalone);
    ctx.services.provide(AUTH, { agents: auth, proxy: auth, corsOrigin: null });
    return null;
  },
});
