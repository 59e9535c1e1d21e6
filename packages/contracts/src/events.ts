// Message events on `herald.message-events`, keyed by message id (see messageEventKey); each has
// a unique event id.
import { z } from 'zod';

export const messageEventTypes = [
  'sent',
  'delivered',
  'bounced',
  'failed',
  'opened',
  'clicked',
  'unsubscribed',
  'excluded',
  'complained',
] as const;

export const bounceTypes = ['hard', 'soft', 'ignored'] as const;

export const messageEventSchema = z.strictObject({
  eventId: z.uuid(),
  type: z.enum(messageEventTypes),
  deliveryId: z.uuid(),
  occurrence: z.number().int().min(0),
  messageId: z.string().min(1),
  profileId: z.string().min(1),
  channel: z.enum(['email', 'sms']),
  occurredAt: z.iso.datetime(),
  bounceType: z.enum(bounceTypes).optional(),
  reason: z.string().optional(),
  url: z.string().optional(),
  machine: z.boolean().optional(),
  /**
   * On a 'bounced' event that arrived after the message was counted (asynchronous bounce, via the
   * webhook): the status it replaces. KPI readers subtract it from that status.
   */
  supersedes: z.enum(['delivered', 'failed']).optional(),
});

export type MessageEvent = z.infer<typeof messageEventSchema>;

/**
 * The bus key of a message event: its message id. All the events of one message (sent, delivered,
 * a later bounce that supersedes, opens, clicks) share a partition and keep their order, while one
 * large delivery spreads over every partition. Every event has a message id: an 'excluded' one
 * carries the synthetic `delivery.occurrence.profile` id, unique per recipient and run.
 */
export function messageEventKey(event: Pick<MessageEvent, 'messageId'>): string {
  return event.messageId;
}

/** One batch of recipients to send, published by the planner on `herald.send-batches`. */
export const sendBatchSchema = z.strictObject({
  batchId: z.string().min(1),
  deliveryId: z.uuid(),
  occurrence: z.number().int().min(0),
  recipients: z
    .array(
      z.strictObject({
        profileId: z.string().min(1),
        address: z.string().min(1),
        /** Profile fields for personalization, read when the batch was planned. */
        profile: z.record(z.string(), z.unknown()).optional(),
      }),
    )
    .min(1)
    .max(1000),
  /** A proof: rendered like the real thing with a subject prefix; no ledger, no events, no KPIs. */
  proof: z.strictObject({ proofId: z.uuid(), subjectPrefix: z.string().max(100), requestedBy: z.string() }).optional(),
});

export type SendBatch = z.infer<typeof sendBatchSchema>;
