// What the API answers, described for the OpenAPI document where a field-by-field description
// helps (the control plane's types are the source; these describe them).
import { OCCURRENCE_ACTIONS, OCCURRENCE_STATES } from '@herald/control-plane';
import { z } from 'zod';

const isoInstant = z.iso.datetime();
const warnings = z.array(z.object({ code: z.string(), message: z.string() })).describe('What the user should know before OK: SEND_TIME_PAST (sendNow applied), NO_ENGINE (none running: not refused), PROVIDERS_DIFFER');
export const confirmationTicketSchema = z.object({
  confirmationId: z.uuid(),
  deliveryId: z.uuid(),
  occurrence: z.number().int(),
  expiresAt: isoInstant,
  summaryHash: z.string(),
  summary: z.object({
    toSend: z.number().int().describe('Recipients that will be sent: the frozen ones less those suppressed since preparation'),
    excluded: z.record(z.string(), z.number().int()).describe('Exclusions as of now, by reason'),
    exclusionsChangedSincePreparation: z.boolean(),
    exclusionsSincePreparation: z.record(z.string(), z.number().int()).describe('Profiles suppressed since preparation, by reason'),
    sendAt: isoInstant.nullable().describe('When the send starts; null: at OK (also when sendNow applied to a past sendAt), or per recipient time zone'),
    sendWindow: z
      .object({ first: isoInstant, last: isoInstant })
      .optional()
      .describe('Per recipient time zone: the first and last local send instants of the frozen recipients'),
    recipientLocalTime: z.string().optional(),
    contentHash: z.string(),
    projectedFinishAt: isoInstant.nullable().describe('Always present; null when no send rate is known (projectedFinishBasis.reason says why)'),
    projectedFinishBasis: z.object({
      source: z.enum(['throughput.perHour', 'engines']).nullable().describe("throughput.perHour: the delivery's own rate; engines: the rate the live engines measured while sending"),
      perHour: z.number().nullable(),
      reason: z.string().optional(),
    }),
    provider: z
      .object({
        channel: z.enum(['email', 'sms']),
        kind: z.enum(['smtp', 'capture-sink', 'http']),
        url: z.string().describe('User, password and query values redacted (***)'),
        host: z.string().optional(),
        port: z.number().int().optional(),
      })
      .nullable()
      .describe('What the live engines will send the channel through; null when no engine runs (warning NO_ENGINE)'),
    warnings,
  }),
});
export const okResultSchema = z.object({
  state: z.string().describe('The state of the delivery (or run) now'),
  startedAs: z.enum(['sending', 'scheduled']).describe('What this OK started; the same on every repeat'),
  deliveryId: z.uuid(),
  occurrence: z.number().int(),
  confirmationId: z.uuid(),
});

export const occurrenceListSchema = z.object({
  items: z.array(
    z.object({
      n: z.number().int(),
      state: z.enum(OCCURRENCE_STATES),
      stateReason: z
        .string()
        .nullable()
        .describe('Why it stopped or paused: EXPIRED_UNCONFIRMED (it waited for a confirmation while RECURRENCE_MAX_PENDING newer runs did), STOPPED_BY_USER, DELIVERY_STOPPED, CIRCUIT_BREAKER: …'),
      actions: z.array(z.enum(OCCURRENCE_ACTIONS)).describe('confirm while it waits for a confirmation; ok while a confirmation of it is live'),
      scheduledFor: isoInstant,
      kpis: z.record(z.string(), z.unknown()).nullable(),
    }),
  ),
});
