import { signWebhook, verifyWebhook } from './webhook-signature.js';

const SECRET = 'spec-secret-spec-secret-spec-secret-0123';
const body = '{"messageId":"<a@b>","type":"hard"}';
const at = new Date('2026-12-01T10:00:00Z');

describe('webhook signature', () => {
  it('accepts the signature of the exact body within five minutes', () => {
    const header = signWebhook(SECRET, body, at);
    expect(header).toMatch(/^t=1796119200,v1=[0-9a-f]{64}$/);
    expect(verifyWebhook(SECRET, header, body, new Date(at.getTime() + 299_000))).toBe('ok');
    expect(verifyWebhook(SECRET, header.toUpperCase().replace('T=', 't=').replace('V1=', 'v1='), body, at)).toBe('ok');
  });

  it('names what is wrong: missing, malformed, expired, mismatch', () => {
    const header = signWebhook(SECRET, body, at);
    expect(verifyWebhook(SECRET, undefined, body, at)).toBe('missing');
    expect(verifyWebhook(SECRET, 'sha256=abc', body, at)).toBe('malformed');
    expect(verifyWebhook(SECRET, 't=1,v1=xyz', body, at)).toBe('malformed');
    expect(verifyWebhook(SECRET, header, body, new Date(at.getTime() + 301_000))).toBe('expired');
    expect(verifyWebhook(SECRET, header, `${body} `, at)).toBe('mismatch');
    expect(verifyWebhook('another-secret-another-secret-0123456', header, body, at)).toBe('mismatch');
  });
});
