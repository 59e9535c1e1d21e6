import { simpleParser } from 'mailparser';
import { expectWellFormedLines, parseHeaderBlock } from '../test/mime-assertions.js';
import { EmailRenderer, messageIdFor, type RecipientData, type RenderContext } from './email-renderer.js';
import { extractLinks } from './links.js';
import { verifyToken } from './tracking-token.js';

const SECRET = 'renderer-spec-secret';

const html = `<!doctype html>
<html><head><title>Spring</title></head>
<body>
  <p>Hello {{ profile.firstName | "friend" }}, your plan is {{ profile.attributes.plan }}.</p>
  <a href="https://shop.example/sale?utm=mail&amp;x=1">Sale</a>
  <a href='https://shop.example/account?u={{profile.id}}'>Account</a>
  <a href="https://shop.example/sale?utm=mail&amp;x=1">Sale again</a>
  <a href="mailto:help@shop.example">Help</a>
  <a href="https://shop.example/private" data-herald-notrack>Private</a>
</BODY>
</html>`;

const content = {
  from: 'Shop Café <news@shop.example>',
  replyTo: 'help@shop.example',
  subject: 'Hi {{ profile.firstName | "there" }} 🎉',
  html,
  text: 'Hello {{ profile.firstName | "friend" }},\nSale: https://shop.example/sale\n',
};

const ada: RecipientData = {
  profileId: 'prof-ada',
  address: 'ada@example.com',
  profile: { id: 'prof-ada', email: 'ada@example.com', firstName: 'Ada', attributes: { plan: 'pro' } },
};

/** What every token of a rendered message carries beside its link: the Message-ID, and the render time in seconds. */
const carried = (messageId: string) => ({ messageId, issuedAt: Date.parse('2025-05-06T07:08:09Z') / 1000 });

const ctx: RenderContext = {
  deliveryId: 'dlv-1',
  occurrence: 2,
  publicUrl: 'https://herald.example/',
  trackingSecret: SECRET,
  now: new Date('2025-05-06T07:08:09Z'),
};

/** The token at the end of every `${publicUrl}${path}<token>` in the text. */
function tokensAfter(text: string, path: string): string[] {
  const prefix = `https://herald.example${path}`;
  return [...text.matchAll(new RegExp(`${prefix.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}([A-Za-z0-9_.-]+)`, 'g'))].map(
    (match) => match[1]!,
  );
}

describe('EmailRenderer', () => {
  const renderer = new EmailRenderer(content);

  it('exposes the tracked links of the html template, placeholders kept literally', () => {
    expect(renderer.links).toEqual([
      'https://shop.example/sale?utm=mail&x=1',
      'https://shop.example/account?u={{profile.id}}',
    ]);
    expect(renderer.links).toEqual(extractLinks(html));
  });

  it('renders a message mailparser reads back as intended', async () => {
    const out = renderer.render(ada, ctx);
    const parsed = await simpleParser(out.raw);
    expect(parsed.subject).toBe('Hi Ada 🎉');
    expect(parsed.from?.value).toEqual([{ name: 'Shop Café', address: 'news@shop.example' }]);
    expect(parsed.text).toBe('Hello Ada,\nSale: https://shop.example/sale\n');
    expect(parsed.messageId).toBe(out.messageId);
    expect(parsed.date?.toISOString()).toBe('2025-05-06T07:08:09.000Z');
    expect(out.envelope).toEqual({ from: 'news@shop.example', to: ['ada@example.com'] });
    expectWellFormedLines(out.raw);

    const body = parsed.html as string;
    expect(body).toContain('Hello Ada, your plan is pro.');
    expect(body).toContain('<a href="mailto:help@shop.example">Help</a>');
    expect(body).toContain('<a href="https://shop.example/private" data-herald-notrack>Private</a>');
    expect(body).not.toContain('https://shop.example/sale');
    expect(body).not.toContain('https://shop.example/account');
  });

  it('rewrites each tracked link to a signed click URL carrying its index, the Message-ID and the issue time', async () => {
    const out = renderer.render(ada, ctx);
    const body = (await simpleParser(out.raw)).html as string;
    const clicks = tokensAfter(body, '/t/c/').map((token) => verifyToken(SECRET, token));
    expect(clicks).toEqual(
      [0, 1, 0].map((link) => ({ kind: 'click', deliveryId: 'dlv-1', occurrence: 2, profileId: 'prof-ada', link, ...carried(out.messageId) })),
    );
  });

  it('adds the open pixel before </body>, and at the end without one', async () => {
    const out = renderer.render(ada, ctx);
    const body = (await simpleParser(out.raw)).html as string;
    const pixel = /<img src="https:\/\/herald\.example\/t\/o\/([^"]+)" width="1" height="1" alt="" style="display:none">/;
    expect(body).toMatch(new RegExp(`${pixel.source}</BODY>\\n</html>$`));
    expect(verifyToken(SECRET, pixel.exec(body)![1]!)).toEqual({
      kind: 'open',
      deliveryId: 'dlv-1',
      occurrence: 2,
      profileId: 'prof-ada',
      ...carried(out.messageId),
    });

    const fragment = new EmailRenderer({ ...content, html: '<p>Hi</p>' });
    const fragmentHtml = (await simpleParser(fragment.render(ada, ctx).raw)).html as string;
    expect(fragmentHtml).toMatch(new RegExp(`^<p>Hi</p>${pixel.source}$`));
  });

  it('adds the one-click unsubscribe headers with a signed token', () => {
    const out = renderer.render(ada, ctx);
    const headers = new Map(parseHeaderBlock(out.raw));
    expect(headers.get('List-Unsubscribe-Post')).toBe('List-Unsubscribe=One-Click');
    const unsubscribe = /^<https:\/\/herald\.example\/u\/([A-Za-z0-9_.-]+)>$/.exec(headers.get('List-Unsubscribe')!);
    expect(verifyToken(SECRET, unsubscribe![1]!)).toEqual({
      kind: 'unsubscribe',
      deliveryId: 'dlv-1',
      occurrence: 2,
      profileId: 'prof-ada',
      ...carried(out.messageId),
    });
  });

  it('leaves the text part without pixel and with its links as written', () => {
    const text = new EmailRenderer({ ...content, html: undefined }).render(ada, ctx).raw.toString('latin1');
    expect(text).not.toContain('/t/o/');
    expect(text).not.toContain('/t/c/');
    expect(text).toContain('Sale: https://shop.example/sale');
  });

  it('never lets a personalization value add a header line', async () => {
    const attacks = [
      'Bob\r\nBcc: victim@example.com',
      'Bob\nBcc: victim@example.com',
      'Bob\rBcc: victim@example.com',
      'Bob\r\n\r\n<html>injected body</html>',
      'Bob\u0085X-Nel: 1\u2028X-Ls: 2',
      'Bob=?UTF-8?B?DQpCY2M6IHZpY3RpbUBleGFtcGxlLmNvbQ==?=',
    ];
    const expected = [
      'From',
      'To',
      'Reply-To',
      'Subject',
      'Date',
      'Message-ID',
      'MIME-Version',
      'List-Unsubscribe',
      'List-Unsubscribe-Post',
      'Content-Type',
    ];
    for (const firstName of attacks) {
      const recipient = { ...ada, profile: { ...ada.profile, firstName } };
      const out = renderer.render(recipient, { ...ctx, subjectPrefix: '[TEST] ' });
      expect(parseHeaderBlock(out.raw).map(([name]) => name)).toEqual(expected);
      expectWellFormedLines(out.raw);
      const parsed = await simpleParser(out.raw);
      expect(parsed.subject).toMatch(/^\[TEST\] Hi Bob/);
      expect(parsed.subject).not.toMatch(/[\r\n]/);
      expect(parsed.headers.has('bcc')).toBe(false);
      expect(parsed.bcc).toBeUndefined();
    }
  });

  it('escapes html in the html part only', async () => {
    const recipient = { ...ada, profile: { ...ada.profile, firstName: '<b>Bo & "Co"</b>' } };
    const parsed = await simpleParser(renderer.render(recipient, ctx).raw);
    expect(parsed.html).toContain('Hello &lt;b&gt;Bo &amp; &quot;Co&quot;&lt;/b&gt;, your plan');
    expect(parsed.text).toContain('Hello <b>Bo & "Co"</b>,');
    expect(parsed.subject).toBe('Hi <b>Bo & "Co"</b> 🎉');
  });

  it('renders defaults for missing values', async () => {
    const parsed = await simpleParser(renderer.render({ ...ada, profile: {} }, ctx).raw);
    expect(parsed.subject).toBe('Hi there 🎉');
    expect(parsed.html).toContain('Hello friend, your plan is .');
  });

  it('prepends the subject prefix', async () => {
    const parsed = await simpleParser(renderer.render(ada, { ...ctx, subjectPrefix: '[TEST] ' }).raw);
    expect(parsed.subject).toBe('[TEST] Hi Ada 🎉');
  });

  it('keeps only the bare address in the envelope', () => {
    const out = renderer.render({ ...ada, address: ' Ada <ada@example.com>\r\n' }, ctx);
    expect(out.envelope).toEqual({ from: 'news@shop.example', to: ['ada@example.com'] });
    expect(new Map(parseHeaderBlock(out.raw)).get('To')).toBe('ada@example.com');
  });

  it('is deterministic for the same recipient and context', () => {
    expect(renderer.render(ada, ctx).raw.equals(renderer.render(ada, ctx).raw)).toBe(true);
  });

  it('keeps a placeholder that is not part of a tracked href working next to a slot', async () => {
    const tight = new EmailRenderer({
      ...content,
      html: '{{profile.firstName}}<a href="https://a.example">x</a>{{profile.firstName}}</body>',
    });
    const parsed = await simpleParser(tight.render(ada, ctx).raw);
    expect(parsed.html).toMatch(/^Ada<a href="https:\/\/herald\.example\/t\/c\/[^"]+">x<\/a>Ada<img [^>]+><\/body>$/);
  });

  it('survives private-use characters in the template', async () => {
    const odd = new EmailRenderer({ ...content, html: '\ue000\ue0010\ue001<a href="https://a.example">x</a>' });
    expect(odd.links).toEqual(['https://a.example']);
    const parsed = await simpleParser(odd.render(ada, ctx).raw);
    expect(parsed.html).toMatch(/^\ue000\ue0010\ue001<a href="https:\/\/herald\.example\/t\/c\/[^"]+">x<\/a><img /);
  });
});

describe('messageIdFor', () => {
  it('is stable per recipient and distinct across recipients, occurrences and deliveries', () => {
    const id = messageIdFor('dlv-1', 1, 'prof-a', 'news@shop.example');
    expect(id).toMatch(/^<[0-9a-f]{32}@shop\.example>$/);
    expect(messageIdFor('dlv-1', 1, 'prof-a', 'news@shop.example')).toBe(id);
    const others = [
      messageIdFor('dlv-1', 1, 'prof-b', 'news@shop.example'),
      messageIdFor('dlv-1', 2, 'prof-a', 'news@shop.example'),
      messageIdFor('dlv-2', 1, 'prof-a', 'news@shop.example'),
      // The separator keeps shifted boundaries apart.
      messageIdFor('dlv-1', 11, 'prof-a', 'news@shop.example'),
      messageIdFor('dlv-11', 1, 'prof-a', 'news@shop.example'),
    ];
    expect(new Set([id, ...others]).size).toBe(6);
  });

  it('takes the domain of the from address, punycoded and lowercased', () => {
    expect(messageIdFor('d', 1, 'p', 'Shop <News@Shop.EXAMPLE>')).toMatch(/@shop\.example>$/);
    expect(messageIdFor('d', 1, 'p', 'news@café.example')).toMatch(/@xn--caf-dma\.example>$/);
    expect(messageIdFor('d', 1, 'p', 'not-an-address')).toMatch(/@herald\.invalid>$/);
  });

  it('is the Message-ID of the rendered message', () => {
    const out = new EmailRenderer(content).render(ada, ctx);
    expect(out.messageId).toBe(messageIdFor('dlv-1', 2, 'prof-ada', 'news@shop.example'));
    expect(new Map(parseHeaderBlock(out.raw)).get('Message-ID')).toBe(out.messageId);
  });
});
