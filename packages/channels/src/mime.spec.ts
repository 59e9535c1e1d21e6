import { type AddressObject, simpleParser } from 'mailparser';
import { bodyLines, expectWellFormedLines, parseHeaderBlock } from '../test/mime-assertions.js';
import { buildMime, encodeQuotedPrintable, formatDate, type MimeMessage, parseAddress } from './mime.js';

const base: MimeMessage = {
  from: 'Zoë Café <news@shop.example>',
  to: 'ada@example.com',
  subject: 'Déjà vu 🎉 — nos offres de l’été, très longues, pour vérifier le découpage en mots encodés',
  messageId: '<0123456789abcdef@shop.example>',
  date: new Date('2025-03-04T05:06:07Z'),
  text: 'Bonjour Ada,\n\nVoici nos offres. Prix : 10 € = pas cher.\n.\nFrom here on, a line.\nTrailing space \nEnd',
  html: '<html><body><p style="color:#333">Bonjour <b>Ada</b> 🎉</p><p>Prix : 10&nbsp;€</p></body></html>',
};

const addresses = (value: AddressObject | AddressObject[] | undefined) =>
  (Array.isArray(value) ? value : value === undefined ? [] : [value]).flatMap((object) => object.value);

describe('buildMime', () => {
  it('round-trips through mailparser: multipart/alternative', async () => {
    const raw = buildMime({ ...base, replyTo: 'Support <help@shop.example>', headers: [['X-Campaign', 'spring']] });
    const parsed = await simpleParser(raw);
    expect(parsed.subject).toBe(base.subject);
    expect(addresses(parsed.from)).toEqual([{ name: 'Zoë Café', address: 'news@shop.example' }]);
    expect(addresses(parsed.to)).toEqual([{ name: '', address: 'ada@example.com' }]);
    expect(addresses(parsed.replyTo)).toEqual([{ name: 'Support', address: 'help@shop.example' }]);
    expect(parsed.messageId).toBe(base.messageId);
    expect(parsed.date?.toISOString()).toBe('2025-03-04T05:06:07.000Z');
    expect(parsed.text).toBe(base.text);
    expect(parsed.html).toBe(base.html);
    expect(parsed.headers.get('x-campaign')).toBe('spring');
    expect(parsed.headers.get('mime-version')).toBe('1.0');
    expect(parsed.headers.get('content-type')).toMatchObject({ value: 'multipart/alternative' });
    expectWellFormedLines(raw);
  });

  it('writes text then html in the alternative', () => {
    const text = buildMime(base).toString('latin1');
    expect(text.indexOf('Content-Type: text/plain')).toBeLessThan(text.indexOf('Content-Type: text/html'));
  });

  it('builds text-only and html-only messages', async () => {
    const textOnly = buildMime({ ...base, html: undefined });
    expect(textOnly.toString('latin1')).toContain('Content-Type: text/plain; charset=utf-8\r\n');
    expect(textOnly.toString('latin1')).not.toContain('multipart');
    expect((await simpleParser(textOnly)).text).toBe(base.text);
    expectWellFormedLines(textOnly);

    const htmlOnly = buildMime({ ...base, text: undefined });
    expect(htmlOnly.toString('latin1')).toContain('Content-Type: text/html; charset=utf-8\r\n');
    expect((await simpleParser(htmlOnly)).html).toBe(base.html);
    expectWellFormedLines(htmlOnly);
  });

  it('writes the expected headers, in order', () => {
    const names = parseHeaderBlock(buildMime({ ...base, replyTo: 'help@shop.example', headers: [['X-A', 'b']] })).map(
      ([name]) => name,
    );
    expect(names).toEqual([
      'From',
      'To',
      'Reply-To',
      'Subject',
      'Date',
      'Message-ID',
      'MIME-Version',
      'X-A',
      'Content-Type',
    ]);
  });

  it('is deterministic: the same input gives the same bytes', () => {
    expect(buildMime(base).equals(buildMime({ ...base }))).toBe(true);
    // The boundary follows the Message-ID.
    const other = buildMime({ ...base, messageId: '<other@shop.example>' }).toString('latin1');
    const boundary = (raw: string) => /boundary="([^"]+)"/.exec(raw)?.[1];
    expect(boundary(other)).not.toBe(boundary(buildMime(base).toString('latin1')));
  });

  it('keeps quoted-printable lines within 76 characters and headers within 78', () => {
    const longWords = `${'x'.repeat(300)} ${'é'.repeat(200)} ${'🎉'.repeat(50)}\n${'a '.repeat(200)}\n${'='.repeat(100)}`;
    const raw = buildMime({
      ...base,
      subject: `${'word '.repeat(60)}end`,
      text: longWords,
      html: `<p>${longWords}</p>`,
      headers: [['X-Long', `${'token '.repeat(40)}end`]],
    });
    const text = raw.toString('latin1');
    const head = text.slice(0, text.indexOf('\r\n\r\n')).split('\r\n');
    for (const line of head) expect(line.length).toBeLessThanOrEqual(78);
    for (const line of bodyLines(raw)) expect(line.length).toBeLessThanOrEqual(76);
    expectWellFormedLines(raw);
  });

  it('round-trips bodies exactly, including long lines, line ends and edge characters', async () => {
    const bodies = [
      '',
      'one line without newline',
      'ends with newline\n',
      ' leading space\n\ttab\nspace before newline \ntab before newline\t\nlast ',
      '.\n..\nFrom me\nFrom\n=3D is not decoded\n= at the end=',
      `${'x'.repeat(75)}\n${'y'.repeat(76)}\n${'z'.repeat(77)}\n${'é'.repeat(100)}\n${'🎉'.repeat(40)}`,
      'null\u0000byte and \u007f del and \u00a0 nbsp',
    ];
    for (const body of bodies) {
      const parsedText = await simpleParser(buildMime({ ...base, html: undefined, text: body }));
      expect(parsedText.text ?? '').toBe(body);
      // mailparser reads an empty part of a multipart as "\n": the empty body is checked above.
      if (body === '') continue;
      const parsedHtml = await simpleParser(buildMime({ ...base, text: body }));
      expect(parsedHtml.text ?? '').toBe(body);
    }
  });

  it('keeps body content from forging a part boundary', async () => {
    const first = buildMime(base).toString('latin1');
    const boundary = /boundary="([^"]+)"/.exec(first)![1]!;
    const text = `before\n--${boundary}\nContent-Type: text/html\n\n<b>forged</b>\n--${boundary}--\nafter`;
    const raw = buildMime({ ...base, text });
    const parsed = await simpleParser(raw);
    expect(parsed.text).toBe(text);
    expect(parsed.html).toBe(base.html);
    expect(raw.toString('latin1').split(`--${boundary}`).length).toBe(4); // 2 openings + the closing one
  });

  it('replaces CR/LF in every header value by a space', () => {
    const raw = buildMime({
      ...base,
      from: 'Evil\r\nBcc: a@example.com <news@shop.example>',
      to: 'ada@example.com\r\nCc: b@example.com',
      replyTo: 'x@example.com\nX-Injected: 1',
      subject: 'Hello\r\nBcc: c@example.com\rX-Other: 2',
      messageId: '<id@shop.example>\r\nX-Id: 3',
      headers: [['X-Campaign', 'spring\r\nX-Injected: 4']],
    });
    expect(parseHeaderBlock(raw).map(([name]) => name)).toEqual([
      'From',
      'To',
      'Reply-To',
      'Subject',
      'Date',
      'Message-ID',
      'MIME-Version',
      'X-Campaign',
      'Content-Type',
    ]);
    expectWellFormedLines(raw);
  });

  it('quotes display names with specials and encodes non-ASCII ones', async () => {
    const cases: [string, string][] = [
      ['Shop, Inc. <news@shop.example>', 'Shop, Inc.'],
      ['"Shop \\"Best\\" Ltd" <news@shop.example>', 'Shop "Best" Ltd'],
      ['Plain Name <news@shop.example>', 'Plain Name'],
      ['=?UTF-8?B?Zm9v?= <news@shop.example>', '=?UTF-8?B?Zm9v?='],
      ['Émile Zola, Éditions 📚 et compagnie très longue pour être découpée <news@shop.example>', 'Émile Zola, Éditions 📚 et compagnie très longue pour être découpée'],
    ];
    for (const [from, name] of cases) {
      const raw = buildMime({ ...base, from });
      const parsed = await simpleParser(raw);
      expect(addresses(parsed.from)).toEqual([{ name, address: 'news@shop.example' }]);
      expectWellFormedLines(raw);
    }
    expect(parseHeaderBlock(buildMime({ ...base, from: 'Shop, Inc. <a@b.example>' }))[0]).toEqual([
      'From',
      '"Shop, Inc." <a@b.example>',
    ]);
  });

  it('encodes an ASCII subject that looks like an encoded word, so it is shown as written', async () => {
    const subject = 'literally =?UTF-8?B?Zm9v?=';
    expect((await simpleParser(buildMime({ ...base, subject }))).subject).toBe(subject);
  });

  it('leaves short ASCII headers readable', () => {
    const headers = new Map(parseHeaderBlock(buildMime({ ...base, from: 'news@shop.example', subject: 'Hello there' })));
    expect(headers.get('From')).toBe('news@shop.example');
    expect(headers.get('Subject')).toBe('Hello there');
    expect(headers.get('Date')).toBe('Tue, 04 Mar 2025 05:06:07 +0000');
  });

  it('rejects invalid or reserved extra header names', () => {
    expect(() => buildMime({ ...base, headers: [['Bad Name', 'x']] })).toThrow(TypeError);
    expect(() => buildMime({ ...base, headers: [['X-A:', 'x']] })).toThrow(TypeError);
    expect(() => buildMime({ ...base, headers: [['content-type', 'text/plain']] })).toThrow(TypeError);
  });
});

describe('helpers', () => {
  it('parseAddress splits names and addresses', () => {
    expect(parseAddress('Zoë <z@example.com>')).toEqual({ name: 'Zoë', address: 'z@example.com' });
    expect(parseAddress('"A \\"B\\"" <a@example.com>')).toEqual({ name: 'A "B"', address: 'a@example.com' });
    expect(parseAddress('  a@example.com ')).toEqual({ name: '', address: 'a@example.com' });
    expect(parseAddress('<a@example.com>')).toEqual({ name: '', address: 'a@example.com' });
  });

  it('formatDate writes RFC 5322 dates in UTC', () => {
    expect(formatDate(new Date('2025-12-31T23:59:09Z'))).toBe('Wed, 31 Dec 2025 23:59:09 +0000');
    expect(() => formatDate(new Date(Number.NaN))).toThrow(RangeError);
  });

  it('encodeQuotedPrintable encodes =, non-ASCII and line-start dots', () => {
    expect(encodeQuotedPrintable('a=b é\n.x').toString()).toBe('a=3Db =C3=A9\r\n=2Ex');
    expect(encodeQuotedPrintable('x'.repeat(80)).toString()).toBe(`${'x'.repeat(75)}=\r\n${'x'.repeat(5)}`);
    // A dot pushed to the start of a line by a soft break is encoded as well.
    expect(encodeQuotedPrintable(`${'x'.repeat(75)}.y`).toString()).toBe(`${'x'.repeat(75)}=\r\n=2Ey`);
    // A line may use all 76 characters when a hard break, not a soft one, ends it.
    expect(encodeQuotedPrintable(`${'x'.repeat(76)}\n`).toString()).toBe(`${'x'.repeat(76)}\r\n`);
    expect(encodeQuotedPrintable('a \nb\t\r\nc\rd').toString()).toBe('a=20\r\nb=09\r\nc\r\nd');
  });
});
