import { breakerOutcomeOf, CircuitBreaker, firstWaveSize, judge, Tally } from './circuit-breaker.js';

const settings = { firstWave: 0.01, hardBounceRate: 0.2, domain4xxRate: 0.5, minSample: 50 };
const many = (n: number, kind: string, address = 'a@x.example', code: number | null = kind === 'soft' ? 451 : 250) =>
  Array.from({ length: n }, () => ({ address, kind, code }));

describe('firstWaveSize', () => {
  it('is a share of the audience, at least the minimum sample, at most the audience', () => {
    expect(firstWaveSize(1_000_000, settings)).toBe(10_000);
    expect(firstWaveSize(5_000, settings)).toBe(50);
    expect(firstWaveSize(30, settings)).toBe(30);
    expect(firstWaveSize(10_000, { ...settings, firstWave: 0.1 })).toBe(1_000);
  });
});

describe('CircuitBreaker', () => {
  it('waits for the first wave', () => {
    const breaker = new CircuitBreaker(settings);
    expect(breaker.observe('r', 1, 10_000, many(99, 'hard'))).toBeUndefined();
    expect(breaker.observe('r', 1, 10_000, many(1, 'hard'))?.reason).toBe('CIRCUIT_BREAKER: hard-bounce rate 100% is above 20% after 100 messages');
  });
  it('needs the minimum sample, however small the audience', () => {
    const breaker = new CircuitBreaker(settings);
    // 100% of 40 messages, the whole audience: not enough to judge.
    expect(breaker.observe('r', 1, 40, many(40, 'hard'))).toBeUndefined();
    expect(new CircuitBreaker({ ...settings, minSample: 20 }).observe('r', 1, 40, many(40, 'hard'))).toBeDefined();
  });
  it('does not trip on one greylisted address (100% of 1 of its domain)', () => {
    const breaker = new CircuitBreaker(settings);
    expect(breaker.observe('r', 1, 100, [...many(99, 'sent'), ...many(1, 'soft', 'x@greylist.test')])).toBeUndefined();
  });
  it('trips on a domain answering 4xx to more than the rate of at least the minimum sample', () => {
    const breaker = new CircuitBreaker(settings);
    expect(breaker.observe('r', 1, 1000, [...many(50, 'sent', 'a@good.example'), ...many(5, 'soft', 'b@good.example')])).toBeUndefined();
    expect(breaker.observe('r', 1, 1000, many(49, 'soft', 'x@blocked.example'))).toBeUndefined();
    expect(breaker.observe('r', 1, 1000, many(1, 'soft', 'x@blocked.example'))?.reason).toBe(
      'CIRCUIT_BREAKER: blocked.example answered 4xx to 100% of 50 messages (above 50%)',
    );
  });
  it('tolerates a few hard bounces', () => {
    const breaker = new CircuitBreaker(settings);
    expect(breaker.observe('r', 1, 1000, [...many(98, 'sent'), ...many(2, 'hard')])).toBeUndefined();
  });
  it("trips at once, with the server's answer, when the server refuses the session", () => {
    const breaker = new CircuitBreaker(settings);
    expect(breaker.observe('r', 1, 10_000, [{ address: 'a@x.example', kind: 'session', error: '535 5.7.8 Authentication failed (at AUTH PLAIN)' }])?.reason).toBe(
      'CIRCUIT_BREAKER: the SMTP server refused the session: 535 5.7.8 Authentication failed (at AUTH PLAIN)',
    );
  });
  it("counts failures with no SMTP answer against the SMTP server, not the recipients' domain", () => {
    const refused = Array.from({ length: 60 }, () => ({ address: 'x@good.example', kind: 'soft', code: null, error: 'connect ECONNREFUSED 127.0.0.1:2525' }));
    expect(new CircuitBreaker(settings).observe('r', 1, 1000, refused)?.reason).toBe(
      'CIRCUIT_BREAKER: the SMTP server did not answer 100% of 60 messages (last: connect ECONNREFUSED 127.0.0.1:2525)',
    );
    // A few connection blips in a healthy send do not pause it.
    expect(new CircuitBreaker(settings).observe('r', 1, 1000, [...many(200, 'sent'), ...refused])).toBeUndefined();
  });
  it('judges each epoch of a run afresh (a resume), and each run on its own', () => {
    const breaker = new CircuitBreaker(settings);
    expect(breaker.observe('r', 1, 100, many(50, 'hard'))).toBeDefined();
    expect(breaker.observe('r', 2, 100, many(1, 'sent'))).toBeUndefined();
    expect(breaker.observe('other', 1, 100, many(49, 'hard'))).toBeUndefined();
  });
});

describe('judge on counts (the first wave, from the ledger)', () => {
  it('counts outcomes by the number', () => {
    const tally = new Tally();
    tally.add({ address: '@example.com', kind: 'hard' }, 30);
    tally.add({ address: '@example.com', kind: 'sent' }, 20);
    expect(judge(tally, settings, 50)?.reason).toBe('CIRCUIT_BREAKER: hard-bounce rate 60% is above 20% after 50 messages');
    expect(judge(tally, settings, 51)).toBeUndefined();
  });
});

describe('breakerOutcomeOf (a ledger count as the breaker sees it)', () => {
  const row = (status: 'sent' | 'bounced' | 'in_doubt' | 'retry' | 'failed', codeClass: 2 | 4 | 5 | null, error: string | null = null) => ({
    domain: 'example.com',
    status,
    codeClass,
    count: 1,
    error,
  });
  it('maps settled statuses to their kinds', () => {
    expect(breakerOutcomeOf(row('sent', 2))).toEqual({ address: '@example.com', kind: 'sent' });
    expect(breakerOutcomeOf(row('bounced', 5))).toEqual({ address: '@example.com', kind: 'hard' });
    expect(breakerOutcomeOf(row('in_doubt', null))).toEqual({ address: '@example.com', kind: 'in_doubt' });
  });
  it('reads a 5xx on a recipient still to retry as a refused session, a 4xx or no answer as soft', () => {
    expect(breakerOutcomeOf(row('retry', 5, '535 auth failed'))).toEqual({ address: '@example.com', kind: 'session', error: '535 auth failed' });
    expect(breakerOutcomeOf(row('retry', 4, '451 later'))).toEqual({ address: '@example.com', kind: 'soft', code: 400, error: '451 later' });
    expect(breakerOutcomeOf(row('failed', null, 'ECONNREFUSED'))).toEqual({ address: '@example.com', kind: 'soft', code: null, error: 'ECONNREFUSED' });
  });
  it('feeds the first wave: unanswered counts go to the SMTP server, 4xx to the domain', () => {
    const tally = new Tally();
    tally.add(breakerOutcomeOf(row('failed', null, 'ECONNREFUSED')), 10);
    tally.add(breakerOutcomeOf(row('retry', 4)), 5);
    expect([tally.attempts, tally.unanswered, tally.domains.get('example.com')]).toEqual([15, 10, { attempts: 5, soft: 5 }]);
  });
});
