// Delivery commands: written to the outbox with the state change that causes them, published on
// `herald.delivery-commands` keyed by delivery id. Consumers dedupe by `commandId`.
import { z } from 'zod';

const commandBase = {
  commandId: z.uuid(),
  deliveryId: z.uuid(),
  occurrence: z.number().int().min(0),
  issuedAt: z.iso.datetime(),
  issuedBy: z.string().min(1),
};

export const deliveryStartedSchema = z.strictObject({
  ...commandBase,
  type: z.literal('DeliveryStarted'),
  channel: z.enum(['email', 'sms']),
  toSend: z.number().int().min(0),
  contentHash: z.string().min(1),
  throughputPerHour: z.number().int().positive().nullable(),
});

export const deliveryPausedSchema = z.strictObject({ ...commandBase, type: z.literal('DeliveryPaused'), reason: z.string() });
export const deliveryResumedSchema = z.strictObject({ ...commandBase, type: z.literal('DeliveryResumed') });
export const deliveryStoppedSchema = z.strictObject({ ...commandBase, type: z.literal('DeliveryStopped') });

export const deliveryCommandSchema = z.discriminatedUnion('type', [
  deliveryStartedSchema,
  deliveryPausedSchema,
  deliveryResumedSchema,
  deliveryStoppedSchema,
]);

export type DeliveryStarted = z.infer<typeof deliveryStartedSchema>;
export type DeliveryPaused = z.infer<typeof deliveryPausedSchema>;
export type DeliveryResumed = z.infer<typeof deliveryResumedSchema>;
export type DeliveryStopped = z.infer<typeof deliveryStoppedSchema>;
export type DeliveryCommand = z.infer<typeof deliveryCommandSchema>;
