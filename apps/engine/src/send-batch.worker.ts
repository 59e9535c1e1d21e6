// A Piscina worker thread: renders the messages of a batch (templates compiled once per
// delivery content and cached) and sends them through this thread's own connections: an SMTP
// pool for email (see smtp-pool.ts), an undici keep-alive pool for the HTTP (sms) provider.
import { workerData } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { EmailRenderer } from '@herald/channels';
import type { SendAttempt } from '@herald/sending';
import { type SmtpError, SmtpPool } from './smtp-pool.js';
import { sendSmsBatch } from './sms-provider.js';
import type { SendTask, SendTaskResult, WorkerSettings } from './send-task.js';

const settings = workerData as WorkerSettings;

// NOTE: one pool of SMTP connections per thread, created once (and the DKIM key parsed once).
const smtp = new SmtpPool({
  url: settings.smtpUrl,
  connections: settings.smtpConnections,
  timeoutMs: settings.smtpTimeoutMs,
  idleTimeoutMs: settings.smtpIdleTimeoutMs,
  dkim: settings.dkim,
});

const renderers = new Map<string, EmailRenderer>();

function rendererFor(task: SendTask): EmailRenderer {
  let renderer = renderers.get(task.contentKey);
  if (!renderer) {
    if (renderers.size > 200) renderers.clear();
    renderer = new EmailRenderer({
      from: task.content.from ?? '',
      replyTo: task.content.replyTo,
      subject: task.content.subject ?? '',
      html: task.content.html,
      text: task.content.text,
    });
    renderers.set(task.contentKey, renderer);
  }
  return renderer;
}

/** The dispatcher set the task's flag: the run is no longer sending. */
const cancelled = (task: SendTask) => task.cancel !== undefined && Atomics.load(task.cancel, 0) !== 0;

export default async function sendBatch(task: SendTask): Promise<SendTaskResult> {
  if (task.channel === 'sms') {
    // One request for the whole batch: it goes, or nothing does.
    if (cancelled(task)) return { attempts: [], notAttempted: task.recipients.map((r) => r.profileId) };
    return { attempts: await sendSmsBatch(settings, task), notAttempted: [] };
  }
  const renderer = rendererFor(task);
  const context = {
    deliveryId: task.deliveryId,
    occurrence: task.occurrence,
    publicUrl: settings.publicUrl,
    trackingSecret: settings.trackingSecret,
    subjectPrefix: task.subjectPrefix,
    proofId: task.proofId,
  };
  const attempts: SendAttempt[] = [];
  const notAttempted: string[] = [];
  let next = 0;
  // As many sends in flight as the thread has SMTP connections. Each lane looks at the
  // cancellation flag before it starts a message (and while it waits for one's send time).
  const lanes = Array.from({ length: Math.min(settings.smtpConnections, task.recipients.length) }, async () => {
    for (let i = next++; i < task.recipients.length; i = next++) {
      const recipient = task.recipients[i]!;
      while (!cancelled(task) && recipient.notBefore > Date.now()) await sleep(Math.min(CANCEL_CHECK_MS, recipient.notBefore - Date.now()));
      if (cancelled(task)) notAttempted.push(recipient.profileId);
      else attempts.push(await sendOne(renderer, recipient, context));
    }
  });
  await Promise.all(lanes);
  return { attempts, notAttempted };
}

/** How often a lane waiting for a send time looks at the cancellation flag. */
const CANCEL_CHECK_MS = 50;

async function sendOne(
  renderer: EmailRenderer,
  recipient: SendTask['recipients'][number],
  context: Parameters<EmailRenderer['render']>[1],
): Promise<SendAttempt> {
  let messageId = '';
  try {
    const message = renderer.render({ profileId: recipient.profileId, address: recipient.address, profile: recipient.profile }, context);
    messageId = message.messageId;
    const info = await smtp.send(message.envelope, message.raw);
    return { profileId: recipient.profileId, address: recipient.address, messageId, ok: true, code: replyCode(info.response), errorCode: null, command: null, response: info.response, afterData: true };
  } catch (error) {
    const e = error as Partial<SmtpError> & Error;
    const answered = typeof e.responseCode === 'number';
    return {
      profileId: recipient.profileId,
      address: recipient.address,
      messageId,
      ok: false,
      code: answered ? e.responseCode! : null,
      errorCode: e.code ?? null,
      command: e.command ?? null,
      response: e.response ?? e.message ?? null,
      // The connection went silent after the whole message went out: the server may hold it.
      afterData: !answered && e.code === 'ETIMEDOUT' && e.afterData === true,
    };
  }
}

/** The reply code at the start of the server's answer (250 when it has none). */
const replyCode = (response: string) => {
  const code = Number(response.slice(0, 3));
  return Number.isInteger(code) && code >= 200 && code < 600 ? code : 250;
};
