import { classify, type SendAttempt } from './outcome.js';

const policy = { retryDelayMs: 60_000, validityMs: 3_600_000 };
const t0 = new Date('2026-12-01T00:00:00Z');
const attempt = (over: Partial<SendAttempt>): SendAttempt => ({
  profileId: 'p1',
  address: 'a@x.example',
  messageId: '<m@x>',
  ok: false,
  code: null,
  errorCode: null,
  command: null,
  response: null,
  afterData: false,
  ...over,
});

describe('classify', () => {
  it('2xx is sent', () => {
    expect(classify(attempt({ ok: true, code: 250 }), 1, t0, t0, policy)).toMatchObject({ kind: 'sent', status: 'sent', code: 250 });
  });
  it('5xx is a hard bounce, at RCPT or after DATA', () => {
    expect(classify(attempt({ code: 550, response: '550 5.1.1 User unknown', command: 'RCPT TO' }), 1, t0, t0, policy)).toMatchObject({
      kind: 'hard',
      status: 'bounced',
      error: '550 5.1.1 User unknown',
    });
    expect(classify(attempt({ code: 554, afterData: true }), 1, t0, t0, policy).kind).toBe('hard');
  });
  it('a 5xx refusing the session is not the recipient\'s bounce: retried, with the command in the error', () => {
    expect(classify(attempt({ code: 535, response: '535 5.7.8 Authentication failed', command: 'AUTH PLAIN' }), 1, t0, t0, policy)).toMatchObject({
      kind: 'session',
      status: 'retry',
      error: '535 5.7.8 Authentication failed (at AUTH PLAIN)',
      nextAttemptAt: new Date(t0.getTime() + 60_000),
    });
    expect(classify(attempt({ code: 554, command: 'CONN' }), 1, t0, t0, policy).kind).toBe('session');
    expect(classify(attempt({ code: 553, command: 'MAIL FROM' }), 1, t0, t0, policy).kind).toBe('session');
    expect(classify(attempt({ code: 552, command: 'DATA' }), 1, t0, t0, policy).kind).toBe('hard');
  });
  it('4xx retries with a doubling delay', () => {
    const first = classify(attempt({ code: 451 }), 1, t0, t0, policy);
    expect(first).toMatchObject({ kind: 'soft', status: 'retry', nextAttemptAt: new Date(t0.getTime() + 60_000) });
    const third = classify(attempt({ code: 421 }), 3, t0, t0, policy);
    expect(third.nextAttemptAt).toEqual(new Date(t0.getTime() + 240_000));
  });
  it('a soft bounce past the validity period fails', () => {
    const late = new Date(t0.getTime() + 3_590_000);
    expect(classify(attempt({ code: 452 }), 2, t0, late, policy)).toMatchObject({ kind: 'soft_final', status: 'failed' });
  });
  it('a connection failure before the data is soft', () => {
    expect(classify(attempt({ errorCode: 'ECONNECTION' }), 1, t0, t0, policy).kind).toBe('soft');
  });
  it('a timeout after the data is in doubt, not retried', () => {
    expect(classify(attempt({ errorCode: 'ETIMEDOUT', afterData: true }), 1, t0, t0, policy)).toMatchObject({
      kind: 'in_doubt',
      status: 'in_doubt',
      nextAttemptAt: null,
    });
  });
});
