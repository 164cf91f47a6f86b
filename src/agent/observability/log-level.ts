/**
 * The log level follows the agent configuration's `observability.logging.level`; a configuration
 * without one brings back the level agentk started with (its --log-level flag).
 */
import type { Logger } from '../../shared/logger.js';
import type { AgentConfigSections } from '../configuration/agent-configuration-receiver.js';

/** Subscribes the root logger's level to the configuration; returns the function that stops it. */
export function followLogLevel(configuration: AgentConfigSections, rootLogger: Logger): () => void {
  const startLevel = rootLogger.level;
  return configuration.subscribe('observability', (observability) => {
    const level = observability?.logging?.level ?? startLevel;
    if (rootLogger.level !== level) rootLogger.level = level;
  });
}
