// The sms channel: a generic JSON batch API over an undici keep-alive pool, many recipients
// per request. POST {messages: [{id, to, text}]} answers {results: [{id, status, code?, error?}]}
// with status 'accepted' | 'rejected' | 'retry' (the contract: @herald/contracts sms-provider);
// what an answer means for each message is a send rule (@herald/sending sms-answer).
import { compileTemplate, render } from '@herald/channels';
import type { SmsProviderRequest } from '@herald/contracts';
import { type SendAttempt, smsAttempts, smsFailure, smsRequestFailed } from '@herald/sending';
import { Pool } from 'undici';
import type { SendTask, WorkerSettings } from './send-task.js';

let pool: Pool | undefined;
const templates = new Map<string, ReturnType<typeof compileTemplate>>();

export async function sendSmsBatch(settings: WorkerSettings, task: SendTask): Promise<SendAttempt[]> {
  if (!settings.httpProviderUrl) {
    return task.recipients.map((r) => smsFailure({ ...r, messageId: `${task.deliveryId}.${r.profileId}` }, null, 'HTTP_PROVIDER_URL is not configured'));
  }
  const url = new URL(settings.httpProviderUrl);
  pool ??= new Pool(url.origin, { connections: 8, pipelining: 1, keepAliveTimeout: 30_000 });
  let template = templates.get(task.contentKey);
  if (!template) {
    template = compileTemplate(task.content.text ?? '');
    templates.set(task.contentKey, template);
  }
  const messages = task.recipients.map((r) => ({
    profileId: r.profileId,
    address: r.address,
    messageId: `${task.deliveryId}.${task.occurrence}.${r.profileId}`,
    text: render(template!, { profile: r.profile }, 'text'),
  }));
  try {
    const response = await pool.request({
      path: url.pathname + url.search,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: messages.map((m) => ({ id: m.messageId, to: m.address, text: m.text })) } satisfies SmsProviderRequest),
      headersTimeout: settings.smtpTimeoutMs,
      bodyTimeout: settings.smtpTimeoutMs,
    });
    return smsAttempts(messages, response.statusCode, await response.body.text());
  } catch (error) {
    // The request may or may not have reached the provider.
    return smsRequestFailed(messages, error);
  }
}
