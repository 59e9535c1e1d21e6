// What an SMTP answer means for a recipient (the reference's bounce rules):
// 2xx sent; 5xx to the recipient or its message a hard bounce (the address is quarantined), a
// 5xx refusing the session (AUTH, EHLO, MAIL FROM...) a retry and a paused run; 4xx or a connection failure a soft
// bounce, retried with a doubling delay until the validity period ends, then failed; a timeout
// after the message data went out is in doubt: it may have been delivered, so it is shown as
// such and not retried.

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

/** A recipient's outcome as the send ledger records it (the shape the control plane settles). */
export interface LedgerOutcome {
  profileId: string;
  status: 'sent' | 'bounced' | 'failed' | 'in_doubt' | 'retry';
  code: number | null;
  error: string | null;
  messageId: string | null;
  nextAttemptAt: Date | null;
}

export interface ClassifiedOutcome extends LedgerOutcome {
  /** 'session': the server refused the session itself (a 5xx at connect, EHLO, AUTH, STARTTLS or MAIL FROM), not this recipient. */
  kind: 'sent' | 'hard' | 'soft' | 'soft_final' | 'in_doubt' | 'session';
}

/**
 * Commands whose 5xx answer says nothing about the recipient: a wrong SMTP password, a relay
 * refusing the sender or the client. The recipient is retried like a soft bounce, never
 * quarantined, and the circuit breaker pauses the run with the server's answer.
 */
export const isSessionCommand = (command: string | null) => command !== null && command !== 'RCPT TO' && command !== 'DATA';

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
  const refusedSession = attempt.code !== null && attempt.code >= 500 && isSessionCommand(attempt.command);
  if (attempt.code !== null && attempt.code >= 500 && !refusedSession) return { ...base, kind: 'hard', status: 'bounced', error };
  if (attempt.afterData && attempt.code === null) return { ...base, kind: 'in_doubt', status: 'in_doubt', error };
  const delay = policy.retryDelayMs * 2 ** Math.max(0, attempts - 1);
  const next = new Date(now.getTime() + delay);
  if (next.getTime() > firstAttemptAt.getTime() + policy.validityMs) {
    return { ...base, kind: 'soft_final', status: 'failed', error: `${error} (validity period ended)` };
  }
  return { ...base, kind: refusedSession ? 'session' : 'soft', status: 'retry', error, nextAttemptAt: next };
}

function describe(attempt: SendAttempt): string {
  const text = (attempt.response ?? attempt.errorCode ?? 'failed').replace(/\s+/g, ' ').trim();
  const answer = attempt.code !== null && !text.startsWith(String(attempt.code)) ? `${attempt.code} ${text}` : text;
  return (isSessionCommand(attempt.command) ? `${answer} (at ${attempt.command})` : answer).slice(0, 500);
}
