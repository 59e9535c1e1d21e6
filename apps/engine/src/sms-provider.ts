// The sms channel: a generic JSON batch API over an undici keep-alive pool, many recipients
// per request. POST {messages: [{id, to, text}]} answers {results: [{id, status, code?, error?}]}
// with status 'accepted' | 'rejected' | 'retry' (the contract: @herald/contracts sms-provider).
// A 2xx answer outside the contract (not JSON, no results, a result that does not match) is
// never guessed at: the provider may have sent the message, so each message it leaves unclear is
// in doubt (not retried), with the raw answer as its error.
import { compileTemplate, render } from '@herald/channels';
import { smsProviderAnswerSchema, smsProviderResultSchema, type SmsProviderResult } from '@herald/contracts';
import { Pool } from 'undici';
import type { SendAttempt } from './outcome.js';
import type { SendTask, WorkerSettings } from './send-task.js';

let pool: Pool | undefined;
const templates = new Map<string, ReturnType<typeof compileTemplate>>();

export async function sendSmsBatch(settings: WorkerSettings, task: SendTask): Promise<SendAttempt[]> {
  if (!settings.httpProviderUrl) {
    return task.recipients.map((r) => failure(r, `${task.deliveryId}.${r.profileId}`, null, 'HTTP_PROVIDER_URL is not configured'));
  }
  const url = new URL(settings.httpProviderUrl);
  pool ??= new Pool(url.origin, { connections: 8, pipelining: 1, keepAliveTimeout: 30_000 });
  let template = templates.get(task.contentKey);
  if (!template) {
    template = compileTemplate(task.content.text ?? '');
    templates.set(task.contentKey, template);
  }
  const messages = task.recipients.map((r) => ({
    id: `${task.deliveryId}.${task.occurrence}.${r.profileId}`,
    to: r.address,
    text: render(template!, { profile: r.profile }, 'text'),
  }));
  try {
    const response = await pool.request({
      path: url.pathname + url.search,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages }),
      headersTimeout: settings.smtpTimeoutMs,
      bodyTimeout: settings.smtpTimeoutMs,
    });
    const text = await response.body.text();
    if (response.statusCode >= 500 || response.statusCode === 429) {
      return task.recipients.map((r, i) => failure(r, messages[i]!.id, 450, `provider answered HTTP ${response.statusCode}`));
    }
    if (response.statusCode >= 400) {
      return task.recipients.map((r, i) => failure(r, messages[i]!.id, 550, `provider refused the batch: HTTP ${response.statusCode} ${text.slice(0, 200)}`));
    }
    const answer = readAnswer(text);
    if (typeof answer === 'string') return task.recipients.map((r, i) => inDoubt(r, messages[i]!.id, answer));
    return task.recipients.map((r, i) => {
      const id = messages[i]!.id;
      const result = answer.results.get(id);
      if (result === undefined) return inDoubt(r, id, `no result for this message in the provider's answer: ${excerpt(text)}`);
      if (typeof result === 'string') return inDoubt(r, id, result);
      if (result.status === 'accepted') {
        return { profileId: r.profileId, address: r.address, messageId: id, ok: true, code: 200, errorCode: null, command: null, response: 'accepted', afterData: true };
      }
      const code = result.status === 'rejected' ? (result.code ?? 550) : 450;
      return failure(r, id, code, result.error ?? result.status);
    });
  } catch (error) {
    // The request may or may not have reached the provider.
    return task.recipients.map((r, i) => ({ ...failure(r, messages[i]!.id, null, String(error)), errorCode: 'EHTTP', afterData: true }));
  }
}

function failure(r: { profileId: string; address: string }, messageId: string, code: number | null, response: string): SendAttempt {
  return { profileId: r.profileId, address: r.address, messageId, ok: false, code, errorCode: null, command: null, response, afterData: false };
}

/** The provider answered 2xx but we cannot tell what became of the message: in doubt, the raw answer as the error. */
function inDoubt(r: { profileId: string; address: string }, messageId: string, response: string): SendAttempt {
  return { ...failure(r, messageId, null, response), errorCode: PROVIDER_ANSWER_INVALID, afterData: true };
}

/** The error code of a provider answer outside the contract (the engine logs those answers). */
export const PROVIDER_ANSWER_INVALID = 'EPROVIDERANSWER';

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
