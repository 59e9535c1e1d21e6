// The message as the SMTP client puts it on the wire: line breaks made CRLF and leading dots
// doubled once (RFC 5321 4.5.2), and a message that already is so passed through untouched.
import { goesOutAsIs, prepareMessage } from './smtp-client.js';

const wire = (text: string) => prepareMessage(Buffer.from(text, 'latin1')).toString('latin1');

describe('prepareMessage', () => {
  it('makes every line break CRLF: LF, CR and CRLF alike', () => {
    expect(wire('a\nb\rc\r\nd')).toBe('a\r\nb\r\nc\r\nd');
    expect(wire('a\n\nb\r\rc\r\n\r\n')).toBe('a\r\n\r\nb\r\n\r\nc\r\n\r\n');
  });

  it('doubles a dot at the start of a line only, the first line included', () => {
    expect(wire('.first\r\nmid.dle\r\n.\r\n..two\n.lf\r.cr')).toBe('..first\r\nmid.dle\r\n..\r\n...two\r\n..lf\r\n..cr');
  });

  it('leaves bytes other than line breaks and leading dots as they are', () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== 10 && b !== 13 && b !== 0x2e));
    expect(prepareMessage(bytes).equals(bytes)).toBe(true);
  });

  it('changes nothing in a message that goesOutAsIs accepts', () => {
    const text = 'From: a@b\r\nSubject: x\r\n\r\nbody.\r\n';
    expect(goesOutAsIs(Buffer.from(text))).toBe(true);
    expect(wire(text)).toBe(text);
  });
});

describe('goesOutAsIs', () => {
  it('accepts CRLF lines without a leading dot', () => {
    expect(goesOutAsIs(Buffer.from('From: a@b\r\nSubject: x\r\n\r\nbody. with dots.\r\n'))).toBe(true);
    expect(goesOutAsIs(Buffer.from('no line break at all'))).toBe(true);
  });

  it.each([
    ['a leading dot on the first line', '.x\r\n'],
    ['a leading dot after CRLF', 'a\r\n.x\r\n'],
    ['a bare LF', 'a\nb\r\n'],
    ['a bare CR', 'a\rb\r\n'],
    ['an LF first', '\na'],
  ])('refuses %s', (_what, text) => {
    expect(goesOutAsIs(Buffer.from(text))).toBe(false);
  });
});
