// The renderer writes each message straight into a reused buffer. This checks its bytes against
// the same message assembled from the reference building blocks (template render, rewriteLinks,
// signToken, buildMime), on inputs chosen to hit every encoding edge: non-ASCII in every place,
// lines longer than quoted-printable's 76 columns, lines starting with '.' or "From ", values
// needing HTML escaping, CR/LF/CRLF line ends, and html-only / text-only / empty messages.
import { EmailRenderer, messageIdFor, type EmailContent, type RecipientData, type RenderContext } from './email-renderer.js';
import { escapeAttribute, rewriteLinks } from './links.js';
import { buildMime, parseAddress } from './mime.js';
import { compileTemplate, render } from './template.js';
import { signToken, type TrackingPayload } from './tracking-token.js';

/** The envelope address: the parsed address without whitespace, controls or angle brackets. */
function bareAddress(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
  return parseAddress(value).address.replace(/[\s\u0000-\u001f\u007f<>]/g, '');
}

/** The message as buildMime assembles it from strings: what the renderer must give, byte for byte. */
function reference(content: EmailContent, recipient: RecipientData, ctx: RenderContext): Buffer {
  const data = { profile: recipient.profile };
  const base = ctx.publicUrl.replace(/\/+$/, '');
  const now = ctx.now!;
  const from = bareAddress(content.from);
  const messageId = messageIdFor(ctx.deliveryId, ctx.occurrence, recipient.profileId, from);
  const token = (kind: TrackingPayload['kind'], link?: number) =>
    signToken(ctx.trackingSecret, {
      kind,
      deliveryId: ctx.deliveryId,
      occurrence: ctx.occurrence,
      profileId: recipient.profileId,
      ...(link === undefined ? {} : { link }),
      ...(ctx.proofId === undefined ? {} : { proof: ctx.proofId }),
      messageId,
      issuedAt: Math.floor(now.getTime() / 1000),
    });
  let html: string | undefined;
  if (content.html !== undefined) {
    // Rewrite first (links are taken from the template), then personalize the whole body.
    const P = '\u{F0000}';
    let marked = rewriteLinks(content.html, (index) => `${P}${index}${P}`);
    const bodyEnd = marked.toLowerCase().lastIndexOf('</body');
    const pixel = `${P}p${P}`;
    marked = bodyEnd === -1 ? marked + pixel : marked.slice(0, bodyEnd) + pixel + marked.slice(bodyEnd);
    html = render(compileTemplate(marked), data, 'html').replace(new RegExp(`${P}(\\d+|p)${P}`, 'gu'), (_, slot: string) =>
      slot === 'p'
        ? `<img src="${escapeAttribute(base)}/t/o/${token('open')}" width="1" height="1" alt="" style="display:none">`
        : `${escapeAttribute(base)}/t/c/${token('click', Number(slot))}`,
    );
  }
  return buildMime({
    from: content.from,
    to: bareAddress(recipient.address),
    subject: (ctx.subjectPrefix ?? '') + render(compileTemplate(content.subject), data, 'header'),
    messageId,
    date: now,
    replyTo: content.replyTo,
    headers: [
      ['List-Unsubscribe', `<${base}/u/${token('unsubscribe')}>`],
      ['List-Unsubscribe-Post', 'List-Unsubscribe=One-Click'],
    ],
    text: content.text === undefined ? undefined : render(compileTemplate(content.text), data, 'text'),
    html,
  });
}

const longWord = 'x'.repeat(200);
const html = `<!doctype html><html><body>
<p>Hello {{ profile.firstName | "there" }} {{ profile.lastName }}, plan {{ profile.attributes.plan | "free" }}.</p>
.{{ profile.firstName }} starts a line with a dot
{{ profile.lead }}From the team
From here on a line starts with From
<p title="{{ profile.title }}">${'Long line of text, '.repeat(12)}{{ profile.lastName }}${'and more, '.repeat(9)}</p>\r
<a href="https://shop.example/sale?utm=mail&amp;x=1">Sale – ünïcødé ☃ 🌸</a>\r<a href='https://shop.example/u?id={{profile.id}}'>Account</a>
<a href="https://shop.example/sale?utm=mail&amp;x=1">Again</a> <a href="mailto:help@shop.example">Help</a>
${longWord}{{ profile.lastName }}${longWord}
trailing spaces then tab {{ profile.firstName }}  \t
=?not-an-encoded-word?= and = signs
F{{ profile.tail }} and a CR\r{{ profile.lf }} then {{ profile.cr }}\nafter, .{{ profile.firstName }}
</BODY></html>`;

const content: EmailContent = {
  from: '"Shop, Café" <news@shop.example>',
  replyTo: 'Help Désk <help@shop.example>',
  subject: '{{ profile.firstName | "Hi" }}, the spring collection 🌸 is here for {{ profile.lastName }} and you',
  html,
  text: `Hello {{ profile.firstName | "there" }},\n.dot line\nFrom line\n${'a long text line '.repeat(10)}{{ profile.lastName }}\r\nend `,
};

const profiles: RecipientData[] = [
  { profileId: 'p-1', address: 'ada@example.com', profile: { id: 'p-1', firstName: 'Ada', lastName: 'Lovelace', attributes: { plan: 'pro' } } },
  {
    profileId: 'p-ü-2',
    address: 'Zoë Ünïcode <zoe@exämple.com>',
    profile: { id: 'p/2&x', firstName: 'Zoë', lastName: 'Ødegård 🎉'.repeat(9), tail: 'rom the start', lf: '\nline', cr: 'ends\r', title: '"quoted" <b>bold</b> & \'apos\'', lead: '' },
  },
  {
    profileId: 'p-3',
    address: ' spaced@example.com ',
    profile: { id: 'p-3', firstName: '.', lastName: `x${'y'.repeat(120)}`, lead: 'From ', title: 'a\r\nb' },
  },
  { profileId: 'p-4', address: 'empty@example.com', profile: {} },
  { profileId: 'p-5', address: 'f@example.com', profile: { firstName: 'Fr', lastName: 'om x', lead: '.', tail: 'ro', lf: '\r\n', cr: '\r', attributes: { plan: 42 } } },
];

const ctx: RenderContext = {
  deliveryId: 'dlv-ü',
  occurrence: 3,
  publicUrl: 'https://herald.example/a&b/',
  trackingSecret: Buffer.from('bytes-spec-secret'),
  now: new Date('2025-05-06T07:08:09.750Z'),
};

const contents: Record<string, EmailContent> = {
  'html and text': content,
  'html only': { ...content, text: undefined },
  'text only': { ...content, html: undefined },
  'text only, ending in a line break': { ...content, html: undefined, text: 'Hi {{ profile.firstName }}\n' },
  'html without </body>': { ...content, html: '<p>{{ profile.firstName }}</p><a href="https://x.example/">x</a>' },
  'neither body': { from: 'news@shop.example', subject: 'Nothing' },
  'every byte value': { ...content, html: `<p>${Array.from({ length: 0x250 }, (_, i) => String.fromCharCode(i)).join('')}</p>` },
};

describe('EmailRenderer bytes', () => {
  for (const [name, variant] of Object.entries(contents)) {
    it(`gives buildMime's bytes: ${name}`, () => {
      const renderer = new EmailRenderer(variant);
      // Twice over: the second round reuses the renderer's buffers after messages of every size.
      for (let round = 0; round < 2; round++) {
        for (const recipient of profiles) {
          for (const context of [ctx, { ...ctx, proofId: 'proof-1', subjectPrefix: '[TEST] ', trackingSecret: 'a string secret' }]) {
            const out = renderer.render(recipient, context);
            expect(out.raw.toString('latin1')).toBe(reference(variant, recipient, context).toString('latin1'));
          }
        }
      }
    });
  }

  it('signs with the secret it is given, even a Buffer rewritten in place', () => {
    const renderer = new EmailRenderer(content);
    const secret = Buffer.from('first-secret-0123');
    const first = renderer.render(profiles[0]!, { ...ctx, trackingSecret: secret });
    secret.write('other');
    const second = renderer.render(profiles[0]!, { ...ctx, trackingSecret: secret });
    expect(second.raw.equals(first.raw)).toBe(false);
    expect(second.raw.toString('latin1')).toBe(reference(content, profiles[0]!, { ...ctx, trackingSecret: secret }).toString('latin1'));
  });

  it('refuses what signToken refuses', () => {
    const renderer = new EmailRenderer(content);
    expect(() => renderer.render({ ...profiles[0]!, profileId: '' }, ctx)).toThrow(TypeError);
    expect(() => renderer.render(profiles[0]!, { ...ctx, trackingSecret: '' })).toThrow(TypeError);
    expect(() => renderer.render(profiles[0]!, { ...ctx, occurrence: -1 })).toThrow(TypeError);
  });
});
