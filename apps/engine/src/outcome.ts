// What an SMTP answer means for a recipient (the reference's bounce rules):
// 2xx sent; 5xx a hard bounce (the address is quarantined); 4xx or a connection failure a soft
// bounce, retried with a doubling delay until the validity period ends, then failed; a timeout
// after the message data went out is in doubt: it may have been delivered, so it is shown as
// such and not retried.
import type { Outcome } from '@herald/control-plane';

/** What a worker thread reports for one recipient. */
export interface SendAttempt {
  profileId: string;
  address: string;
  messageId: string;
  ok: boolean;
  /** SMTP reply code when the server answered. */
  code: number | null;
  /** Transport error code (ETIMEDOUT, ECONNECTION, EENVELOPE, EMESSAGE, ...). */
  errorCode: string | null;
  /** The SMTP command the failure happened at, when known. */
  command: string | null;
  response: string | null;
  /** True when the message may have arrived: handed over (sent), or the connection went silent after it. */
  afterData: boolean;
}

export interface RetryPolicy {
  retryDelayMs: number;
  validityMs: number;
}

export interface ClassifiedOutcome extends Outcome {
  kind: 'sent' | 'hard' | 'soft' | 'soft_final' | 'in_doubt';
}

export function classify(
  attempt: SendAttempt,
  attempts: number,
  firstAttemptAt: Date,
  now: Date,
  policy: RetryPolicy,
): ClassifiedOutcome {
  const base = { profileId: attempt.profileId, code: attempt.code, messageId: attempt.messageId, nextAttemptAt: null };
  if (attempt.ok) return { ...base, kind: 'sent', status: 'sent', error: null };
  const error = describe(attempt);
  if (attempt.code !== null && attempt.code >= 500) return { ...base, kind: 'hard', status: 'bounced', error };
  if (attempt.afterData && attempt.code === null) return { ...base, kind: 'in_doubt', status: 'in_doubt', error };
  const delay = policy.retryDelayMs * 2 ** Math.max(0, attempts - 1);
  const next = new Date(now.getTime() + delay);
  if (next.getTime() > firstAttemptAt.getTime() + policy.validityMs) {
    return { ...base, kind: 'soft_final', status: 'failed', error: `${error} (validity period ended)` };
  }
  return { ...base, kind: 'soft', status: 'retry', error, nextAttemptAt: next };
}

function describe(attempt: SendAttempt): string {
  const text = (attempt.response ?? attempt.errorCode ?? 'failed').replace(/\s+/g, ' ').trim();
  return (attempt.code !== null && !text.startsWith(String(attempt.code)) ? `${attempt.code} ${text}` : text).slice(0, 500);
}
