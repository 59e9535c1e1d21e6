// What the dispatcher hands a worker thread: one whole batch (never one message), with the
// content to render and each recipient's earliest send time.
import type { SendAttempt } from './outcome.js';

export interface SendTask {
  deliveryId: string;
  occurrence: number;
  /** Renderers are cached per delivery content: the key changes when the content does. */
  contentKey: string;
  channel: 'email' | 'sms';
  content: { from?: string; replyTo?: string; subject?: string; html?: string; text?: string };
  subjectPrefix?: string;
  recipients: { profileId: string; address: string; profile: Record<string, unknown>; notBefore: number }[];
}

export interface SendTaskResult {
  attempts: SendAttempt[];
}

/** Settings each worker thread reads once, at start (Piscina workerData). */
export interface WorkerSettings {
  smtpUrl: string;
  smtpConnections: number;
  smtpTimeoutMs: number;
  /** An SMTP connection idle this long is closed. */
  smtpIdleTimeoutMs: number;
  publicUrl: string;
  trackingSecret: string;
  httpProviderUrl?: string;
  dkim?: { domainName: string; keySelector: string; privateKey: string };
}
