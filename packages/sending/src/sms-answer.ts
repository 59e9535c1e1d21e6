// What an sms provider's answer means for each message of a batch request (the contract:
// @herald/contracts sms-provider). HTTP 5xx or 429: every message a soft failure (retried);
// another 4xx: the provider refused the batch, every message a hard failure; 2xx: each message
// as its result says (accepted, rejected with its code, 5xx by default, or to retry). A 2xx
// answer outside the contract (not JSON, no results, a result that does not match, a message
// without a result) is never guessed at: the provider may have sent the message, so each message
// it leaves unclear is in doubt (not retried), with the raw answer as its error.
import { smsProviderAnswerSchema, smsProviderResultSchema, type SmsProviderResult } from '@herald/contracts';
import type { SendAttempt } from './outcome.js';

/** One message of a request: its recipient and its id in the request. */
export interface SmsMessage {
  profileId: string;
  address: string;
  messageId: string;
}

/** The error code of a provider answer outside the contract (the engine logs those answers). */
export const PROVIDER_ANSWER_INVALID = 'EPROVIDERANSWER';

/** What the provider's answer (HTTP status and body) says of each message of the request. */
export function smsAttempts(messages: SmsMessage[], statusCode: number, body: string): SendAttempt[] {
  if (statusCode >= 500 || statusCode === 429) {
    return messages.map((m) => smsFailure(m, 450, `provider answered HTTP ${statusCode}`));
  }
  if (statusCode >= 400) {
    return messages.map((m) => smsFailure(m, 550, `provider refused the batch: HTTP ${statusCode} ${body.slice(0, 200)}`));
  }
  const answer = readAnswer(body);
  if (typeof answer === 'string') return messages.map((m) => inDoubt(m, answer));
  return messages.map((m) => {
    const result = answer.results.get(m.messageId);
    if (result === undefined) return inDoubt(m, `no result for this message in the provider's answer: ${excerpt(body)}`);
    if (typeof result === 'string') return inDoubt(m, result);
    if (result.status === 'accepted') {
      return { profileId: m.profileId, address: m.address, messageId: m.messageId, ok: true, code: 200, errorCode: null, command: null, response: 'accepted', afterData: true };
    }
    const code = result.status === 'rejected' ? (result.code ?? 550) : 450;
    return smsFailure(m, code, result.error ?? result.status);
  });
}

/** The request failed without an answer: it may or may not have reached the provider. */
export function smsRequestFailed(messages: SmsMessage[], error: unknown): SendAttempt[] {
  return messages.map((m) => ({ ...smsFailure(m, null, String(error)), errorCode: 'EHTTP', afterData: true }));
}

/** A message not sent, with the code (SMTP-like) and the reason. */
export function smsFailure(m: SmsMessage, code: number | null, response: string): SendAttempt {
  return { profileId: m.profileId, address: m.address, messageId: m.messageId, ok: false, code, errorCode: null, command: null, response, afterData: false };
}

/** The provider answered 2xx but we cannot tell what became of the message: in doubt, the raw answer as the error. */
function inDoubt(m: SmsMessage, response: string): SendAttempt {
  return { ...smsFailure(m, null, response), errorCode: PROVIDER_ANSWER_INVALID, afterData: true };
}

const excerpt = (text: string) => (text.length > 300 ? `${text.slice(0, 300)}…` : text);

/**
 * The results of an answer by message id (a result outside the contract: its error text), or
 * the error text of an answer that is not one at all.
 */
function readAnswer(text: string): { results: Map<string, SmsProviderResult | string> } | string {
  const invalid = (why: string, raw = text) => `the provider's answer does not match the contract (${why}): ${excerpt(raw)}`;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return invalid('not JSON');
  }
  const envelope = smsProviderAnswerSchema.safeParse(json);
  if (!envelope.success) return invalid(issues(envelope.error));
  const results = new Map<string, SmsProviderResult | string>();
  for (const raw of envelope.data.results) {
    const id = (raw as { id?: unknown } | null)?.id;
    if (typeof id !== 'string') continue; // nameless: it can answer for no message
    const result = smsProviderResultSchema.safeParse(raw);
    results.set(id, result.success ? result.data : invalid(issues(result.error), JSON.stringify(raw)));
  }
  return { results };
}

const issues = (error: { issues: { path: PropertyKey[]; message: string }[] }) =>
  error.issues.map((i) => `${i.path.map(String).join('.') || 'answer'}: ${i.message}`).join('; ');
