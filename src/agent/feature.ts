/**
 * One feature of agentk (observability, kubernetes-api, tunnel, ...). app.ts lists them explicitly,
 * starts them in order and stops them in reverse, so a feature may rely on every feature before it
 * being up while it runs.
 */
export interface Feature {
  /** Short name for logs: the feature's folder name. */
  readonly name: string;
  /** Starts serving. Rejects when the feature cannot start; agentk then stops what had started. */
  start(): Promise<void>;
  /** Stops serving and releases every resource; called once, only after a successful start. */
  stop(): Promise<void>;
}
