/** The API for GitLab's listener (served when its secret file is set). */
import { z } from 'zod';
import { configPart } from '../configuration/config-part.js';
import { address, file } from '../configuration/fields.js';

export const apiConfig = configPart('api', {
  listen: z.strictObject({ address: address('127.0.0.1:8153'), authentication_secret_file: file.optional() }).prefault({}),
}, `listen:
  address: 127.0.0.1:8153
  # authentication_secret_file: /etc/kas/gitlab_secret   # the API for GitLab is served when set`);
