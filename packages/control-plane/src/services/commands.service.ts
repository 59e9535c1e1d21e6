// Commands are delivered at least once (the outbox relay may publish a row again after a crash):
// a consumer records each command id it applied, and applies a command again never.
import type { ControlPlaneContext } from './context.js';

/** Runs a command's effect at most once per consumer: the record and the effect commit together. */
export class CommandDeduplicator {
  constructor(
    private readonly ctx: ControlPlaneContext,
    readonly consumer: string,
  ) {}

  /**
   * Records that this consumer applies `commandId` and runs `effect` in the same transaction (an
   * effect that fails leaves the command unapplied); false, running nothing, when it was applied before.
   */
  async once(commandId: string, effect: () => Promise<void> = async () => undefined): Promise<boolean> {
    return this.ctx.db.transaction(async (tx) => {
      if (!(await this.ctx.outbox.claimCommand(tx, this.consumer, commandId))) return false;
      await effect();
      return true;
    });
  }
}
