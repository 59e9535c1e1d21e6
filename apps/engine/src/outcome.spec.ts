import { CircuitBreaker } from './circuit-breaker.js';
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

describe('CircuitBreaker', () => {
  const settings = { firstWave: 0.01, hardBounceRate: 0.2, domain4xxRate: 0.5 };
  const many = (n: number, kind: string, address = 'a@x.example') => Array.from({ length: n }, () => ({ address, kind }));

  it('waits for the first wave', () => {
    const breaker = new CircuitBreaker(settings);
    expect(breaker.observe('r', 10_000, many(99, 'hard'))).toBeUndefined();
    expect(breaker.observe('r', 10_000, many(1, 'hard'))?.reason).toMatch(/hard-bounce rate 100%/);
  });
  it('trips on a domain answering 4xx, not on healthy traffic', () => {
    const breaker = new CircuitBreaker(settings);
    expect(breaker.observe('r', 1000, [...many(50, 'sent', 'a@good.example'), ...many(5, 'soft', 'b@good.example')])).toBeUndefined();
    expect(breaker.observe('r', 1000, many(30, 'soft', 'x@blocked.example'))?.reason).toMatch(/blocked\.example answered 4xx to 100%/);
  });
  it('tolerates a few hard bounces', () => {
    const breaker = new CircuitBreaker(settings);
    expect(breaker.observe('r', 1000, [...many(98, 'sent'), ...many(2, 'hard')])).toBeUndefined();
  });
  it('trips at once, with the server\'s answer, when the server refuses the session', () => {
    const breaker = new CircuitBreaker(settings);
    expect(breaker.observe('r', 10_000, [{ address: 'a@x.example', kind: 'session', error: '535 5.7.8 Authentication failed (at AUTH PLAIN)' }])?.reason).toBe(
      'CIRCUIT_BREAKER: the SMTP server refused the session: 535 5.7.8 Authentication failed (at AUTH PLAIN)',
    );
  });
  it('counts failures with no SMTP answer against the SMTP server, not the recipients\' domain', () => {
    const breaker = new CircuitBreaker(settings);
    const refused = Array.from({ length: 30 }, () => ({ address: 'x@good.example', kind: 'soft', code: null, error: 'connect ECONNREFUSED 127.0.0.1:2525' }));
    expect(breaker.observe('r', 1000, refused)?.reason).toBe(
      'CIRCUIT_BREAKER: the SMTP server did not answer 100% of 30 messages (last: connect ECONNREFUSED 127.0.0.1:2525)',
    );
    // A few connection blips in a healthy send do not pause it.
    const healthy = new CircuitBreaker(settings);
    expect(healthy.observe('r', 1000, [...many(200, 'sent'), ...refused])).toBeUndefined();
  });
  it('judges afresh after a reset', () => {
    const breaker = new CircuitBreaker(settings);
    expect(breaker.observe('r', 100, many(5, 'hard'))).toBeDefined();
    breaker.reset('r');
    expect(breaker.observe('r', 100, many(1, 'sent'))).toBeUndefined();
  });
});
