// The contract of an sms provider's batch endpoint (POST HTTP_PROVIDER_URL): what Herald sends,
// and the answer it accepts. An answer outside it is never guessed at: each message it leaves
// unclear is an error in doubt, with the raw answer in the sending logs.
import { z } from 'zod';

export const smsProviderRequestSchema = z.strictObject({
  messages: z.array(z.strictObject({ id: z.string(), to: z.string(), text: z.string() })),
});

/** One message's result: accepted, rejected (with an SMTP-like code, 5xx by default) or to retry. */
export const smsProviderResultSchema = z.object({
  id: z.string(),
  status: z.enum(['accepted', 'rejected', 'retry']),
  code: z.number().int().min(100).max(599).optional(),
  error: z.string().optional(),
});

/** The answer's envelope: each result is checked on its own, so one bad result spoils only its message. */
export const smsProviderAnswerSchema = z.object({ results: z.array(z.unknown()) });

export type SmsProviderRequest = z.infer<typeof smsProviderRequestSchema>;
export type SmsProviderResult = z.infer<typeof smsProviderResultSchema>;
