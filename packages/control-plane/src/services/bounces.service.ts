// Asynchronous bounces and complaints (the bounce webhook). A message the MTA accepted counts as
// delivered; a bounce that arrives later moves it to bounced (hard, soft or ignored) and the KPIs
// follow through a 'bounced' event that says which status it supersedes. Hard bounces quarantine
// the address at once, soft ones after a threshold of consecutive soft bounces, and a complaint
// denylists it. Each message changes once: a report repeated by the MTA changes nothing more.
import { randomUUID } from 'node:crypto';
import { type MessageEvent, TOPICS } from '@herald/contracts';
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

interface LedgerRow {
  delivery_id: string;
  occurrence: number;
  profile_id: string;
  status: string;
  message_id: string;
  complained_at: Date | null;
  channel: 'email' | 'sms';
  profile_status: ProfileStatus;
}

export class BouncesService {
  constructor(
    private readonly ctx: ControlPlaneContext,
    private readonly softRule: SoftBounceRule = DEFAULT_SOFT_BOUNCE_RULE,
  ) {}

  async apply(report: BounceReport): Promise<BounceResult> {
    const messageId = report.messageId.startsWith('<') ? report.messageId : `<${report.messageId}>`;
    return this.ctx.db.transaction(async (tx) => {
      const [row] = await tx.query<LedgerRow>(
        `SELECT l.delivery_id, l.occurrence, l.profile_id, l.status, l.message_id, l.complained_at, d.channel,
                p.status AS profile_status
           FROM send_ledger l JOIN deliveries d ON d.id = l.delivery_id JOIN profiles p ON p.id = l.profile_id
          WHERE l.message_id = $1
          FOR UPDATE OF l`,
        [messageId],
      );
      if (!row) throw new DomainError('NOT_FOUND', `No message with Message-ID ${messageId} was sent by Herald.`);
      const now = this.ctx.clock.now();
      const result = (applied: boolean, status: string, profileStatus: ProfileStatus): BounceResult => ({
        messageId,
        deliveryId: row.delivery_id,
        occurrence: row.occurrence,
        profileId: row.profile_id,
        applied,
        status,
        profileStatus,
      });
      const event = (fields: Pick<MessageEvent, 'type'> & Partial<MessageEvent>): MessageEvent => ({
        eventId: randomUUID(),
        deliveryId: row.delivery_id,
        occurrence: row.occurrence,
        messageId,
        profileId: row.profile_id,
        channel: row.channel,
        occurredAt: now.toISOString(),
        ...(report.reason ? { reason: report.reason } : {}),
        ...fields,
      });
      const publish = (e: MessageEvent) =>
        this.ctx.outbox.enqueue(tx, { commandId: e.eventId, topic: TOPICS.messageEvents, key: e.deliveryId, payload: e });

      if (report.type === 'complaint') {
        if (row.complained_at) return result(false, row.status, row.profile_status);
        await tx.query('UPDATE send_ledger SET complained_at = $2 WHERE message_id = $1', [messageId, now]);
        await this.ctx.profiles.setStatus(tx, row.profile_id, 'denylisted');
        await publish(event({ type: 'complained' }));
        return result(true, row.status, 'denylisted');
      }

      // 'sent' counted as delivered; 'in_doubt' (no answer after DATA) counted as an error.
      const supersedes = row.status === 'sent' ? 'delivered' : row.status === 'in_doubt' ? 'failed' : undefined;
      if (!supersedes) {
        if (row.status === 'bounced' || row.status === 'failed') return result(false, row.status, row.profile_status);
        throw new DomainError('INVALID_STATE', `Message ${messageId} has not been sent yet (status '${row.status}').`, { status: row.status });
      }
      await tx.query(
        `UPDATE send_ledger SET status = 'bounced', bounce_type = $2, last_error = coalesce($3, last_error), updated_at = $4
          WHERE message_id = $1`,
        [messageId, report.type, report.reason ?? null, now],
      );
      await publish(event({ type: 'bounced', bounceType: report.type, supersedes }));
      let profileStatus = row.profile_status;
      if (report.type === 'hard' && (await this.ctx.profiles.quarantine(tx, [row.profile_id])) > 0) profileStatus = 'quarantined';
      if (report.type === 'soft' && (await this.ctx.profiles.recordSoftBounces(tx, [row.profile_id], now, this.softRule)).length > 0) {
        profileStatus = 'quarantined';
      }
      return result(true, 'bounced', profileStatus);
    });
  }
}
