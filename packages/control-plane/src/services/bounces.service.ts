// Asynchronous bounces and complaints (the bounce webhook). A message the MTA accepted counts as
// delivered; a bounce that arrives later moves it to bounced (hard, soft or ignored) and the KPIs
// follow through a 'bounced' event that says which status it supersedes. Hard bounces quarantine
// the address at once, soft ones after a threshold of consecutive soft bounces, and a complaint
// denylists it. Each message changes once: a report repeated by the MTA changes nothing more.
import { randomUUID } from 'node:crypto';
import { type MessageEvent, messageEventKey, TOPICS } from '@herald/contracts';
import { DomainError } from '../errors.js';
import type { ProfileStatus, SoftBounceRule } from '../repositories/profiles.repository.js';
import type { BounceReport } from '../schemas.js';
import type { ControlPlaneContext } from './context.js';

export interface BounceResult {
  messageId: string;
  deliveryId: string;
  occurrence: number;
  profileId: string;
  /** False when the report changed nothing (already bounced, failed, or already complained). */
  applied: boolean;
  /** The message's status in the sending logs after the report. */
  status: string;
  profileStatus: ProfileStatus;
}

export const DEFAULT_SOFT_BOUNCE_RULE: SoftBounceRule = { threshold: 5, resetAfterMs: 10 * 24 * 3600_000 };

export class BouncesService {
  constructor(
    private readonly ctx: ControlPlaneContext,
    private readonly softRule: SoftBounceRule = DEFAULT_SOFT_BOUNCE_RULE,
  ) {}

  async apply(report: BounceReport): Promise<BounceResult> {
    const messageId = report.messageId.startsWith('<') ? report.messageId : `<${report.messageId}>`;
    return this.ctx.db.transaction(async (tx) => {
      const row = await this.ctx.ledger.messageForUpdate(tx, messageId);
      if (!row) throw new DomainError('NOT_FOUND', `No message with Message-ID ${messageId} was sent by Herald.`);
      const now = this.ctx.clock.now();
      const result = (applied: boolean, status: string, profileStatus: ProfileStatus): BounceResult => ({
        messageId,
        deliveryId: row.deliveryId,
        occurrence: row.occurrence,
        profileId: row.profileId,
        applied,
        status,
        profileStatus,
      });
      const event = (fields: Pick<MessageEvent, 'type'> & Partial<MessageEvent>): MessageEvent => ({
        eventId: randomUUID(),
        deliveryId: row.deliveryId,
        occurrence: row.occurrence,
        messageId,
        profileId: row.profileId,
        channel: row.channel,
        occurredAt: now.toISOString(),
        ...(report.reason ? { reason: report.reason } : {}),
        ...fields,
      });
      const publish = (e: MessageEvent) =>
        this.ctx.outbox.enqueue(tx, { commandId: e.eventId, topic: TOPICS.messageEvents, key: messageEventKey(e), payload: e });

      if (report.type === 'complaint') {
        if (row.complainedAt) return result(false, row.status, row.profileStatus);
        await this.ctx.ledger.markComplained(tx, messageId, now);
        await this.ctx.profiles.setStatus(tx, row.profileId, 'denylisted');
        await publish(event({ type: 'complained' }));
        return result(true, row.status, 'denylisted');
      }

      // 'sent' counted as delivered; 'in_doubt' (no answer after DATA) counted as an error.
      const supersedes = row.status === 'sent' ? 'delivered' : row.status === 'in_doubt' ? 'failed' : undefined;
      if (!supersedes) {
        if (row.status === 'bounced' || row.status === 'failed') return result(false, row.status, row.profileStatus);
        throw new DomainError('INVALID_STATE', `Message ${messageId} has not been sent yet (status '${row.status}').`, { status: row.status });
      }
      await this.ctx.ledger.markBounced(tx, messageId, { type: report.type, reason: report.reason ?? null }, now);
      await publish(event({ type: 'bounced', bounceType: report.type, supersedes }));
      let profileStatus = row.profileStatus;
      if (report.type === 'hard' && (await this.ctx.profiles.quarantine(tx, [row.profileId])) > 0) profileStatus = 'quarantined';
      if (report.type === 'soft' && (await this.ctx.profiles.recordSoftBounces(tx, [row.profileId], now, this.softRule)).length > 0) {
        profileStatus = 'quarantined';
      }
      return result(true, 'bounced', profileStatus);
    });
  }
}
