// DkimSigner against nodemailer's DKIM signer: the same key and message give the same bytes, so
// moving the engine from one to the other changes no signature.
import { generateKeyPairSync } from 'node:crypto';
import DKIM from 'nodemailer/lib/dkim';
import { DkimSigner } from './dkim.js';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
const options = { domainName: 'shop.example', keySelector: 'herald', privateKey };

async function nodemailerSigned(message: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of new DKIM(options).sign(message)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const messages: Record<string, string> = {
  'a CRLF message': 'From: a@shop.example\r\nTo: b@example.com\r\nSubject: Hello  there \r\nDate: Fri, 27 Nov 2026 20:00:00 +0000\r\nMessage-ID: <1@shop.example>\r\n\r\nline one  \r\n\tline  two\r\n\r\n\r\n',
  'folded headers and trailing empty lines': 'From: a@shop.example\r\nSubject: a\r\n folded\r\n\tsubject\r\nTo: b@example.com\r\n\r\nbody\r\n\r\n\r\n',
  'bare LF line ends and a bare CR': 'From: a@shop.example\nSubject: lf\n\nbody\rwith cr \nend',
  'an empty body': 'From: a@shop.example\r\nSubject: empty\r\n\r\n',
  'a body of spaces': 'From: a@shop.example\r\nSubject: spaces\r\n\r\n   \r\n \t \r\n',
};

describe('DkimSigner', () => {
  it.each(Object.entries(messages))('signs %s with the bytes nodemailer writes', async (_what, text) => {
    const message = Buffer.from(text, 'latin1');
    const ours = new DkimSigner(options).sign(message);
    const theirs = await nodemailerSigned(message);
    expect(ours.toString('latin1')).toBe(theirs.toString('latin1'));
    expect(ours.toString('latin1')).toMatch(/^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=shop.example;/);
  });

  it('throws at construction on a key it cannot parse', () => {
    expect(() => new DkimSigner({ ...options, privateKey: 'not a key' })).toThrow();
  });
});
