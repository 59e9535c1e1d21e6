import { emlFileName, readMessageId, seqOfFileName } from './message.js';
import { compileMatch, parseRules, RuleBook } from './rules.js';

describe('parseRules', () => {
  it('fills in the stage: rcpt by default, data for hang', () => {
    expect(
      parseRules(
        JSON.stringify([
          { match: 'a@example.test', code: 550 },
          { match: '*@example.test', code: 'hang' },
          { match: '/^greylist-/', stage: 'data', code: 451, times: 2, message: 'try later' },
        ]),
      ),
    ).toEqual([
      { match: 'a@example.test', stage: 'rcpt', code: 550 },
      { match: '*@example.test', stage: 'data', code: 'hang' },
      { match: '/^greylist-/', stage: 'data', code: 451, times: 2, message: 'try later' },
    ]);
  });

  it('accepts an empty list', () => {
    expect(parseRules('[]')).toEqual([]);
  });

  it('says the input is not JSON', () => {
    expect(() => parseRules('[{')).toThrow(/invalid capture-sink rules: not JSON/);
  });

  it('wants an array', () => {
    expect(() => parseRules('{"match": "a@b.test", "code": 550}')).toThrow(/rules: rules must be a JSON array/);
  });

  it('lists every problem with its place', () => {
    let message = '';
    try {
      parseRules(
        JSON.stringify([
          { match: 'a@example.test', code: 250 },
          { match: 'no-at-sign', code: 550, stgae: 'data' },
          { match: '/^x/i', code: 550 },
          { match: '/[/', code: 550 },
          { match: '*@*.example.test', code: 550 },
          { match: 'a@example.test', code: 'hang', stage: 'rcpt' },
          { match: 'a@example.test', code: 451, times: 0 },
          { match: 'a@example.test', code: 451, message: 'two\r\nlines' },
          { match: 'a@example.test', code: 451, stage: 'later' },
          { code: 550 },
        ]),
      );
    } catch (error) {
      message = (error as Error).message;
    }
    const lines = message.split('\n');
    expect(lines[0]).toBe('invalid capture-sink rules:');
    expect(lines.slice(1)).toEqual([
      "  - rules[0].code: code must be an SMTP reply code from 400 to 599, or 'hang'",
      expect.stringMatching(/^ {2}- rules\[1\]\.match: "no-at-sign": must be an address/),
      '  - rules[1]: Unrecognized key: "stgae"',
      expect.stringMatching(/^ {2}- rules\[2\]\.match: .*without flags/),
      expect.stringMatching(/^ {2}- rules\[3\]\.match: "\/\[\/": invalid regex/),
      expect.stringMatching(/^ {2}- rules\[4\]\.match: .*one plain domain/),
      "  - rules[5].stage: code 'hang' only exists at stage 'data'",
      '  - rules[6].times: times must be a positive integer',
      '  - rules[7].message: message must be a single line (no CR or LF)',
      "  - rules[8].stage: stage must be 'rcpt' or 'data'",
      expect.stringMatching(/^ {2}- rules\[9\]\.match: /),
    ]);
  });

  it('names the file it read', () => {
    expect(() => parseRules('[1]', ' in /tmp/rules.json')).toThrow(/^invalid capture-sink rules in \/tmp\/rules\.json:/);
  });
});

describe('compileMatch', () => {
  it('matches an exact address case-insensitively (given a lower-cased address)', () => {
    const matches = compileMatch('Bounce@Example.TEST');
    expect(matches('bounce@example.test')).toBe(true);
    expect(matches('xbounce@example.test')).toBe(false);
  });

  it("matches '*@domain' on the whole domain only", () => {
    const matches = compileMatch('*@Example.test');
    expect(matches('anyone@example.test')).toBe(true);
    expect(matches('anyone@sub.example.test')).toBe(false);
    expect(matches('anyone@example.test.evil')).toBe(false);
  });

  it('matches a /regex/ case-insensitively', () => {
    const matches = compileMatch('/^bounce-\\d+@/');
    expect(matches('bounce-12@example.test')).toBe(true);
    expect(matches('BOUNCE-3@example.test'.toLowerCase())).toBe(true);
    expect(matches('x-bounce-1@example.test')).toBe(false);
  });
});

describe('RuleBook', () => {
  it('accepts when no rule matches the stage and address', () => {
    const book = new RuleBook();
    book.setRules([{ match: 'a@example.test', stage: 'data', code: 550 }]);
    expect(book.decide('rcpt', 'a@example.test')).toBeNull();
    expect(book.decide('data', 'b@example.test')).toBeNull();
    expect(book.decide('data', 'A@example.test')).toMatchObject({
      code: 550,
      message: 'Message for A@example.test refused by capture-sink rule a@example.test',
    });
  });

  it('counts times per address, then falls through to later rules', () => {
    const book = new RuleBook();
    book.setRules([
      { match: '*@example.test', code: 451, times: 2, message: 'greylisted' },
      { match: 'hard@example.test', code: 550 },
    ]);
    const codes = (address: string) => book.decide('rcpt', address)?.code ?? 250;

    expect([codes('soft@example.test'), codes('SOFT@example.test'), codes('soft@example.test')]).toEqual([
      451, 451, 250,
    ]);
    expect([codes('hard@example.test'), codes('hard@example.test'), codes('hard@example.test')]).toEqual([
      451, 451, 550,
    ]);
  });

  it('keeps the counters of rules that survive a reload, forgets the others', () => {
    const book = new RuleBook();
    const greylist = { match: 'a@example.test', code: 451, times: 1 };
    book.setFileRules([greylist]);
    expect(book.decide('rcpt', 'a@example.test')?.code).toBe(451);

    book.setFileRules([greylist, { match: 'b@example.test', code: 550 }]);
    expect(book.decide('rcpt', 'a@example.test')).toBeNull();

    book.setFileRules([]);
    book.setFileRules([greylist]);
    expect(book.decide('rcpt', 'a@example.test')?.code).toBe(451);
  });

  it('puts rules set in code before the rules file', () => {
    const book = new RuleBook();
    book.setFileRules([{ match: 'a@example.test', code: 550 }]);
    book.setRules([{ match: 'a@example.test', code: 421 }]);
    expect(book.decide('rcpt', 'a@example.test')?.code).toBe(421);
  });

  it('throws on invalid rules and keeps the old ones', () => {
    const book = new RuleBook();
    book.setRules([{ match: 'a@example.test', code: 550 }]);
    expect(() => book.setRules([{ match: 'a@example.test', code: 600 }])).toThrow(/rules\[0\]\.code/);
    expect(book.decide('rcpt', 'a@example.test')?.code).toBe(550);
  });
});

describe('readMessageId', () => {
  const id = (raw: string) => readMessageId(Buffer.from(raw));

  it('reads the header, keeping the angle brackets', () => {
    expect(id('From: a@b.test\r\nMessage-ID:   <x.1@b.test>  \r\nSubject: s\r\n\r\nbody')).toBe('<x.1@b.test>');
  });

  it('unfolds a folded header and ignores the header name case', () => {
    expect(id('message-id:\r\n\t<folded@b.test>\r\nSubject: s\r\n\r\n')).toBe('<folded@b.test>');
    expect(id('MESSAGE-ID: <lf@b.test>\n\nbody')).toBe('<lf@b.test>');
  });

  it('looks only at the header block', () => {
    expect(id('Subject: s\r\n\r\nMessage-ID: <in-body@b.test>\r\n')).toBeNull();
    expect(id('\r\nMessage-ID: <in-body@b.test>\r\n')).toBeNull();
  });

  it('is null without the header or with an empty one', () => {
    expect(id('Subject: s\r\n\r\n')).toBeNull();
    expect(id('Message-ID:   \r\n\r\n')).toBeNull();
    expect(id('X-Message-ID: <other@b.test>\r\n\r\n')).toBeNull();
  });

  it('reads a header block that has not ended yet', () => {
    expect(id('Message-ID: <partial@b.test>\r\nSubj')).toBe('<partial@b.test>');
  });
});

describe('emlFileName', () => {
  it('pads the seq and sanitizes the id', () => {
    expect(emlFileName(7, '<abc.def@b.test>')).toBe('00000007-abc.def@b.test.eml');
    expect(emlFileName(12, '<a/b\\c:d e@b.test>')).toBe('00000012-a_b_c_d_e@b.test.eml');
    expect(emlFileName(3, null)).toBe('00000003-no-id.eml');
    expect(emlFileName(3, '<>')).toBe('00000003-no-id.eml');
    expect(emlFileName(123_456_789, '<x@y>')).toBe('123456789-x@y.eml');
  });

  it('reads the seq back', () => {
    expect(seqOfFileName(emlFileName(42, '<x@y>'))).toBe(42);
    expect(seqOfFileName('notes.txt')).toBeNull();
  });
});
