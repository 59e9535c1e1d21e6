// Input schemas of the control plane, validated once at the boundary (the gateway) and reused
// for the OpenAPI document. Objects are strict: unknown fields are rejected, not ignored.
import { z } from 'zod';
import { isRecurrence, isTimeZone } from './time.js';

/** Text that ends up in a message header: a CR or LF would let it add header lines. */
export const headerText = (max = 998) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((value) => !/[\r\n]/.test(value), { message: 'must not contain CR or LF (header injection)' });

export const timeZone = z.string().refine(isTimeZone, { message: 'is not an IANA time zone' });

const attributeValue = z.union([z.string(), z.number(), z.boolean(), z.null()]);

export const profileSchema = z.strictObject({
  id: z.string().min(1).max(200),
  email: z.string().max(320).nullable().optional(),
  phone: z.string().max(32).nullable().optional(),
  firstName: headerText(200).nullable().optional(),
  lastName: headerText(200).nullable().optional(),
  locale: z.string().max(35).nullable().optional(),
  timezone: timeZone.nullable().optional(),
  attributes: z.record(z.string(), z.unknown()).optional(),
});
export type ProfileInput = z.infer<typeof profileSchema>;

export const createAudienceSchema = z.union([
  z.strictObject({ name: z.string().min(1).max(200), profileIds: z.array(z.string().min(1)).max(100_000).optional() }),
  z.strictObject({
    name: z.string().min(1).max(200),
    filter: z.record(z.string(), attributeValue).refine((f) => Object.keys(f).length > 0, { message: 'needs at least one attribute' }),
  }),
]);
export type CreateAudienceInput = z.infer<typeof createAudienceSchema>;

export const addMembersSchema = z.strictObject({ profileIds: z.array(z.string().min(1)).min(1).max(100_000) });

export const contentSchema = z.strictObject({
  from: headerText().optional(),
  replyTo: headerText().optional(),
  subject: headerText().optional(),
  html: z.string().max(2_000_000).optional(),
  text: z.string().max(2_000_000).optional(),
});
export type DeliveryContent = z.infer<typeof contentSchema>;

const localDateTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * A send time already past at Confirm send is refused (400 SEND_TIME_PAST) unless `sendNow` says
 * to send at once instead.
 */
const sendNow = z.boolean().optional();

export const scheduleSchema = z.union([
  z.strictObject({
    sendAt: z.string().regex(localDateTime, 'must be an ISO 8601 date-time, e.g. 2026-12-01T09:00:00'),
    timezone: timeZone.optional(),
    sendNow,
  }),
  z.strictObject({
    recipientTimezone: z.literal(true),
    localTime: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be HH:MM'),
    date: z.iso.date().optional(),
    sendNow,
  }),
]);
export type Schedule = z.infer<typeof scheduleSchema>;

export const recurrenceSchema = z.strictObject({
  every: z.string().refine(isRecurrence, { message: 'must be a duration of at least 1m (e.g. "1h", "1d") or a cron expression' }),
  requireConfirmation: z.boolean().default(true),
  timezone: timeZone.optional(),
});
export type Recurrence = z.infer<typeof recurrenceSchema>;

export const throughputSchema = z.strictObject({ perHour: z.number().int().positive().max(100_000_000) });

const deliveryFields = {
  name: z.string().min(1).max(200),
  channel: z.enum(['email', 'sms']),
  audienceId: z.uuid(),
  content: contentSchema,
  schedule: scheduleSchema.nullable().optional(),
  recurrence: recurrenceSchema.nullable().optional(),
  throughput: throughputSchema.nullable().optional(),
};

export const createDeliverySchema = z.strictObject(deliveryFields);
export type CreateDeliveryInput = z.infer<typeof createDeliverySchema>;

export const updateDeliverySchema = z
  .strictObject(deliveryFields)
  .partial()
  .refine((patch) => Object.keys(patch).length > 0, { message: 'names no field to change' });
export type UpdateDeliveryInput = z.infer<typeof updateDeliverySchema>;

export type Channel = CreateDeliveryInput['channel'];

/** Content rules that depend on the channel; returns problems as [path, message]. */
export function contentProblems(channel: Channel, content: DeliveryContent): [string, string][] {
  const problems: [string, string][] = [];
  if (channel === 'email') {
    if (!content.from) problems.push(['content.from', 'is required for email']);
    else if (!/^(?:[^<>]*<)?[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+>?$/.test(content.from)) problems.push(['content.from', 'must be an address or "Name <address>"']);
    if (!content.subject) problems.push(['content.subject', 'is required for email']);
    if (!content.html && !content.text) problems.push(['content', 'needs html or text']);
  } else if (!content.text) {
    problems.push(['content.text', 'is required for sms']);
  }
  return problems;
}

export const proofRequestSchema = z.strictObject({
  to: z.array(z.email().max(320)).min(1).max(20),
  /** Personalize the proof with this profile's data (else placeholders take their defaults). */
  profileId: z.string().min(1).optional(),
  subjectPrefix: headerText(100).optional(),
});
export type ProofRequest = z.infer<typeof proofRequestSchema>;

export const listQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().optional(),
  state: z.string().optional(),
});

export const emptyBodySchema = z.strictObject({}).optional();

/** An asynchronous bounce or complaint, as an MTA or a provider reports it (POST /v1/webhooks/bounces). */
export const bounceReportSchema = z.strictObject({
  /** The Message-ID Herald gave the message, with or without its angle brackets. */
  messageId: z.string().trim().min(1).max(998),
  type: z.enum(['hard', 'soft', 'ignored', 'complaint']),
  reason: z.string().max(2000).optional(),
});
export type BounceReport = z.infer<typeof bounceReportSchema>;
