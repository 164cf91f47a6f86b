/**
 * Agents a request just waited for in vain. kubectl's discovery sends several requests one after
 * the other and retries them; each waiting the whole agent wait timeout for an agent that is down
 * made one command take minutes. After a wait timed out, requests for that agent within the next
 * timeout are answered at once (a session that connects meanwhile is still used: only the wait is
 * skipped). Bounded: at most `max` agents are remembered; expired ones go first.
 */
export class AbsentAgents {
  private readonly until = new Map<number, number>();

  constructor(
    private readonly forMs: number,
    private readonly max = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** A wait for the agent timed out now. */
  record(agentId: number): void {
    if (this.until.size >= this.max) this.prune();
    if (this.until.size >= this.max) this.until.clear();
    this.until.set(agentId, this.now() + this.forMs);
  }

  /** True when a wait for the agent timed out less than `forMs` ago. */
  recentlyAbsent(agentId: number): boolean {
    const until = this.until.get(agentId);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.until.delete(agentId);
    return false;
  }

  private prune(): void {
    const now = this.now();
    for (const [id, until] of this.until) if (until <= now) this.until.delete(id);
  }
}
