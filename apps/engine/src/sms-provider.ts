// The sms channel: a generic JSON batch API over an undici keep-alive pool, many recipients
// per request. POST {messages: [{id, to, text}]} answers {results: [{id, status, code?, error?}]}
// with status 'accepted' | 'rejected' | 'retry'.
import { compileTemplate, render } from '@herald/channels';
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
    const results = new Map(
      ((JSON.parse(text) as { results?: { id: string; status: string; code?: number; error?: string }[] }).results ?? []).map((r) => [r.id, r]),
    );
    return task.recipients.map((r, i) => {
      const id = messages[i]!.id;
      const result = results.get(id);
      if (result?.status === 'accepted') {
        return { profileId: r.profileId, address: r.address, messageId: id, ok: true, code: 200, errorCode: null, command: null, response: 'accepted', afterData: true };
      }
      const code = result?.status === 'rejected' ? (result.code ?? 550) : 450;
      return failure(r, id, code, result?.error ?? (result ? result.status : 'no result for this message'));
    });
  } catch (error) {
    // The request may or may not have reached the provider.
    return task.recipients.map((r, i) => ({ ...failure(r, messages[i]!.id, null, String(error)), errorCode: 'EHTTP', afterData: true }));
  }
}

function failure(r: { profileId: string; address: string }, messageId: string, code: number | null, response: string): SendAttempt {
  return { profileId: r.profileId, address: r.address, messageId, ok: false, code, errorCode: null, command: null, response, afterData: false };
}
