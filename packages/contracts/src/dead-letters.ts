// Dead letters on `<topic>.dlq`: a message the consumers of <topic> gave up on (it broke the
// topic's contract, a handler said it can never be handled, or it outlived its retry budget),
// keyed like the original, with why. `herald dlq replay` publishes `value` under `key` again.
import { z } from 'zod';

export const deadLetterSchema = z.object({
  /** Why the message was given up on: the contract's complaint, or the handler's last reason. */
  reason: z.string().min(1),
  /** The original message's key and value (a value that was not JSON: its text). */
  key: z.string(),
  value: z.unknown(),
  /** Where it was read, and by which consumer group. */
  topic: z.string().min(1),
  partition: z.number().int().min(0),
  offset: z.number().int().min(0),
  group: z.string().min(1),
  /** Deliveries to the handler before it was given up on (0: it broke the contract and never reached the handler). */
  attempts: z.number().int().min(0),
  failedAt: z.iso.datetime(),
});

export type DeadLetter = z.infer<typeof deadLetterSchema>;
