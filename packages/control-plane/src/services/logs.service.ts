// What happened to a delivery's recipients and to a profile, as operators read it: the
// exclusion log, the sending logs, the audit log, progress counts, a profile's messages.
import type { AuditRecord } from '../repositories/audit.repository.js';
import type { ExclusionRecord, LedgerEntry } from '../repositories/ledger.repository.js';
import type { ProfileMessage, Progress } from '../repositories/send-queue.repository.js';
import type { ControlPlaneContext } from './context.js';

/** A page of a log ordered by profile id: at most `limit` rows after the profile id `after`. */
export interface LogPage {
  limit: number;
  after?: string;
}

export class LogsService {
  constructor(private readonly ctx: ControlPlaneContext) {}

  /** Who was excluded from a run, why, and when (at preparation, or at send time). */
  async exclusions(deliveryId: string, page: LogPage, occurrence = 0): Promise<ExclusionRecord[]> {
    return this.ctx.ledger.exclusions(this.ctx.db, deliveryId, occurrence, page);
  }

  /** One row per frozen recipient of a run with its latest status. */
  async sendingLogs(deliveryId: string, page: LogPage, occurrence = 0): Promise<LedgerEntry[]> {
    return this.ctx.ledger.entries(this.ctx.db, deliveryId, occurrence, page);
  }

  /** Every confirmation step and state change of a delivery and its runs, oldest first. */
  async audit(deliveryId: string): Promise<AuditRecord[]> {
    return this.ctx.audit.forDelivery(this.ctx.db, deliveryId);
  }

  /** Recipients by ledger status: of one run, or of every run of the delivery when `occurrence` is undefined. */
  async progress(deliveryId: string, occurrence?: number): Promise<Progress> {
    return this.ctx.sendQueue.progress(this.ctx.db, { deliveryId, occurrence });
  }

  /** The messages a profile was sent (or attempted), newest first. */
  async profileHistory(profileId: string, limit: number): Promise<ProfileMessage[]> {
    return this.ctx.sendQueue.historyOf(this.ctx.db, profileId, limit);
  }
}
