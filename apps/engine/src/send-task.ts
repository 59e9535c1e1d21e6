// What the dispatcher hands a worker thread: one whole batch (never one message), with the
// content to render, each recipient's earliest send time, and a cancellation flag the thread
// reads before it starts each message.
import type { SendAttempt } from '@herald/sending';

export interface SendTask {
  deliveryId: string;
  occurrence: number;
  /** Renderers are cached per delivery content: the key changes when the content does. */
  contentKey: string;
  channel: 'email' | 'sms';
  content: { from?: string; replyTo?: string; subject?: string; html?: string; text?: string };
  subjectPrefix?: string;
  /** A proof: its tracking tokens carry this id. */
  proofId?: string;
  recipients: { profileId: string; address: string; profile: Record<string, unknown>; notBefore: number }[];
  /**
   * One Int32 in shared memory (the same for the dispatcher and the thread): non-zero once the
   * run is no longer sending (paused, stopped). The thread then starts no further message.
   */
  cancel?: Int32Array;
}

export interface SendTaskResult {
  attempts: SendAttempt[];
  /** Recipients the thread did not start (the task was cancelled): nothing was sent to them. */
  notAttempted: string[];
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
