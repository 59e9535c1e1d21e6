import { PROVIDER_ANSWER_INVALID, smsAttempts, smsFailure, smsRequestFailed } from './sms-answer.js';

const messages = [
  { profileId: 'p1', address: '+33600000001', messageId: 'd.0.p1' },
  { profileId: 'p2', address: '+33600000002', messageId: 'd.0.p2' },
];
const answer = (results: unknown[]) => JSON.stringify({ results });

describe('smsAttempts', () => {
  it('reads each result: accepted, rejected with its code (550 by default), to retry', () => {
    const attempts = smsAttempts(
      [...messages, { profileId: 'p3', address: '+33600000003', messageId: 'd.0.p3' }],
      200,
      answer([
        { id: 'd.0.p1', status: 'accepted' },
        { id: 'd.0.p2', status: 'rejected', error: 'unknown number' },
        { id: 'd.0.p3', status: 'retry', code: 503 },
      ]),
    );
    expect(attempts.map((a) => [a.profileId, a.ok, a.code, a.response, a.afterData])).toEqual([
      ['p1', true, 200, 'accepted', true],
      ['p2', false, 550, 'unknown number', false],
      ['p3', false, 450, 'retry', false],
    ]);
    expect(smsAttempts(messages.slice(0, 1), 200, answer([{ id: 'd.0.p1', status: 'rejected', code: 554 }]))[0]!.code).toBe(554);
  });

  it('makes a 5xx or 429 answer a soft failure of every message, another 4xx a hard one', () => {
    expect(smsAttempts(messages, 503, '').map((a) => [a.code, a.response])).toEqual([
      [450, 'provider answered HTTP 503'],
      [450, 'provider answered HTTP 503'],
    ]);
    expect(smsAttempts(messages, 429, '')[0]!.code).toBe(450);
    expect(smsAttempts(messages, 401, 'bad token')[1]).toMatchObject({ ok: false, code: 550, response: 'provider refused the batch: HTTP 401 bad token', afterData: false });
  });

  it('puts in doubt, never guessing, each message a 2xx answer outside the contract leaves unclear', () => {
    for (const body of ['<html>ok</html>', JSON.stringify({ ok: true })]) {
      for (const attempt of smsAttempts(messages, 200, body)) {
        expect(attempt).toMatchObject({ ok: false, code: null, errorCode: PROVIDER_ANSWER_INVALID, afterData: true });
        expect(attempt.response).toContain("the provider's answer does not match the contract");
      }
    }
    const [first, second] = smsAttempts(messages, 200, answer([{ id: 'd.0.p1', status: 'sent' }]));
    expect(first).toMatchObject({ errorCode: PROVIDER_ANSWER_INVALID, afterData: true });
    expect(first!.response).toContain('status');
    expect(second).toMatchObject({ errorCode: PROVIDER_ANSWER_INVALID, afterData: true });
    expect(second!.response).toContain('no result for this message');
  });
});

describe('smsRequestFailed and smsFailure', () => {
  it('puts every message of a request without an answer in doubt', () => {
    expect(smsRequestFailed(messages, new Error('socket hang up'))[0]).toMatchObject({ ok: false, code: null, errorCode: 'EHTTP', response: 'Error: socket hang up', afterData: true });
  });
  it('says a message was not sent, and why', () => {
    expect(smsFailure(messages[0]!, null, 'HTTP_PROVIDER_URL is not configured')).toEqual({
      profileId: 'p1',
      address: '+33600000001',
      messageId: 'd.0.p1',
      ok: false,
      code: null,
      errorCode: null,
      command: null,
      response: 'HTTP_PROVIDER_URL is not configured',
      afterData: false,
    });
  });
});
