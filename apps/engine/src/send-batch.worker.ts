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
  const base = { profileId: recipient.profileId, address: recipient.address };
  let messageId = '';
  try {
    const message = renderer.render({ profileId: recipient.profileId, address: recipient.address, profile: recipient.profile }, context);
    messageId = message.messageId;
    const info = await smtp.send(message.envelope, message.raw);
    return { ...base, messageId, ok: true, code: replyCode(info.response) ?? 250, errorCode: null, command: null, response: info.response ?? null, afterData: true };
  } catch (error) {
    const e = error as SmtpError;
    const command = e.command ?? null;
    return {
      ...base,
      messageId,
      ok: false,
      code: typeof e.responseCode === 'number' ? e.responseCode : null,
      errorCode: e.code ?? null,
      command,
      response: e.response ?? e.message ?? null,
      afterData: mayHaveArrived(e.code, e.timeoutType, typeof e.responseCode === 'number'),
    };
  }
}

const replyCode = (response: string | undefined) => {
  const match = /^(\d{3})/.exec(response ?? '');
  return match ? Number(match[1]) : null;
};

/**
 * An established connection that went silent (nodemailer's SOCKET_TIMEOUT) without an SMTP
 * answer: the server may hold the message, typically while we wait for the reply to the data.
 * NOTE: nodemailer does not say which command was waiting, so every silent timeout counts as in
 * doubt: a duplicate is worse than a message shown as in doubt.
 */
function mayHaveArrived(code: string | undefined, timeoutType: string | undefined, answered: boolean): boolean {
  return !answered && code === 'ETIMEDOUT' && timeoutType === 'SOCKET_TIMEOUT';
}
