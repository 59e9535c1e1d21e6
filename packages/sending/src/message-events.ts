// The message events an outcome produces (what the KPIs count): sent and delivered for a message
// handed over, bounced (hard, or soft once its validity period ended), failed for one in doubt,
// excluded for a recipient suppressed after preparation; nothing for a soft bounce being retried.
// Each event has a stable id per (message, outcome), so an outcome settled again (a batch
// redelivered after a crash) never counts twice.
import { createHash } from 'node:crypto';
import type { MessageEvent } from '@herald/contracts';
import type { ClassifiedOutcome } from './outcome.js';

/** A delivery run: the delivery, and its occurrence (0 for a one-off delivery). */
export interface MessageRun {
  deliveryId: string;
  occurrence: number;
}

/** A stable id per (message, attempt, outcome), shaped like a UUID: a re-settled outcome never counts twice. */
export function eventId(...parts: (string | number)[]): string {
  const hex = createHash('sha256').update(parts.join('\u0000')).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** A recipient not sent because its profile was suppressed after preparation: counted apart by the KPIs, never as sent. */
export function excludedEvent(recipient: { profileId: string; reason: string }, run: MessageRun, channel: 'email' | 'sms', now: Date): MessageEvent {
  return {
    eventId: eventId(run.deliveryId, run.occurrence, recipient.profileId, 'excluded'),
    type: 'excluded',
    deliveryId: run.deliveryId,
    occurrence: run.occurrence,
    messageId: `${run.deliveryId}.${run.occurrence}.${recipient.profileId}`,
    profileId: recipient.profileId,
    channel,
    occurredAt: now.toISOString(),
    reason: recipient.reason,
  };
}

/** The events of one recipient's outcome. */
export function eventsFor(outcome: ClassifiedOutcome, run: MessageRun, channel: 'email' | 'sms', now: Date): MessageEvent[] {
  const base = {
    deliveryId: run.deliveryId,
    occurrence: run.occurrence,
    messageId: outcome.messageId ?? `${run.deliveryId}.${run.occurrence}.${outcome.profileId}`,
    profileId: outcome.profileId,
    channel,
    occurredAt: now.toISOString(),
  };
  const id = (type: string) => eventId(run.deliveryId, run.occurrence, outcome.profileId, type);
  switch (outcome.kind) {
    case 'sent':
      // NOTE: handed to the MTA counts as delivered (the reference: delivered starts at 100% of
      // sent and falls as asynchronous bounces arrive).
      return [
        { ...base, eventId: id('sent'), type: 'sent' },
        { ...base, eventId: id('delivered'), type: 'delivered' },
      ];
    case 'hard':
      return [{ ...base, eventId: id('bounced'), type: 'bounced', bounceType: 'hard', reason: outcome.error ?? undefined }];
    case 'soft_final':
      return [{ ...base, eventId: id('bounced'), type: 'bounced', bounceType: 'soft', reason: outcome.error ?? undefined }];
    case 'in_doubt':
      return [{ ...base, eventId: id('failed'), type: 'failed', reason: `in doubt: ${outcome.error ?? ''}`.trim() }];
    default:
      return []; // a soft bounce being retried is not an outcome yet
  }
}
