/** How often each connected agent's configuration file is read again. */
import { configPart } from '../configuration/config-part.js';
import { duration } from '../configuration/fields.js';

export const agentConfigurationConfig = configPart('agent.configuration', { poll_period: duration('5m') }, `poll_period: 5m`);
