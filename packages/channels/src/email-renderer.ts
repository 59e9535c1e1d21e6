// The email renderer the send engine calls once per recipient: personalization, click and
// open tracking, one-click unsubscribe headers, Message-ID and the raw MIME bytes.
//
// Everything that depends only on the content (parsing placeholders, finding links, where the
// pixel goes) is done once in the constructor. The HTML template is cut at every tracked href
// and at the pixel position into segments, so render() never scans HTML: it renders the
// segments and drops a freshly signed URL into each slot.
import { createHash } from 'node:crypto';
import { domainToASCII } from 'node:url';
import { escapeAttribute, extractLinks, rewriteLinks } from './links.js';
import { buildMime, parseAddress } from './mime.js';
import { type CompiledTemplate, compileTemplate, render as renderTemplate } from './template.js';
import { signToken, type TrackingPayload } from './tracking-token.js';

export interface EmailContent {
  from: string;
  replyTo?: string;
  subject: string;
  html?: string;
  text?: string;
}

export interface RecipientData {
  profileId: string;
  address: string;
  /** id, email, firstName, lastName, locale, attributes...: templates see it as `profile`. */
  profile: Record<string, unknown>;
}

export interface RenderContext {
  deliveryId: string;
  occurrence: number;
  /** Base URL of the tracking endpoints, e.g. https://herald.example (a trailing '/' is fine). */
  publicUrl: string;
  trackingSecret: Buffer | string;
  /** Prepended verbatim to the personalized subject, e.g. "[TEST] ". */
  subjectPrefix?: string;
  /** The proof this message is: its tracking tokens say so (they redirect and record nothing). */
  proofId?: string;
  now?: Date;
}

export interface RenderedEmail {
  messageId: string;
  raw: Buffer;
  envelope: { from: string; to: string[] };
}

/** A slot in the HTML: a tracked link (its index in `links`) or the open pixel. */
type Slot = { link: number } | 'pixel';

export class EmailRenderer {
  /** The tracked links of the HTML template; click tokens carry an index into this list. */
  readonly links: string[];
  private readonly subject: CompiledTemplate;
  private readonly text: CompiledTemplate | undefined;
  /** Template segments with a slot between each two: segments.length === slots.length + 1. */
  private readonly htmlSegments: CompiledTemplate[] | undefined;
  private readonly htmlSlots: Slot[];
  private readonly envelopeFrom: string;

  constructor(private readonly content: EmailContent) {
    this.subject = compileTemplate(content.subject);
    this.text = content.text === undefined ? undefined : compileTemplate(content.text);
    this.links = content.html === undefined ? [] : extractLinks(content.html);
    this.htmlSlots = [];
    this.htmlSegments = content.html === undefined ? undefined : this.cutHtml(content.html);
    this.envelopeFrom = cleanAddress(parseAddress(content.from).address);
  }

  render(recipient: RecipientData, ctx: RenderContext): RenderedEmail {
    const data = { profile: recipient.profile };
    const subject = (ctx.subjectPrefix ?? '') + renderTemplate(this.subject, data, 'header');
    const base = ctx.publicUrl.replace(/\/+$/, '');
    const now = ctx.now ?? new Date();
    const fromAddress = this.envelopeFrom;
    const messageId = messageIdFor(ctx.deliveryId, ctx.occurrence, recipient.profileId, fromAddress);
    // The tokens carry the Message-ID and their issue time: the gateway records an open or a
    // click from the token alone, with no lookup of the message in the ledger.
    const issuedAt = Math.floor(now.getTime() / 1000);
    const token = (kind: TrackingPayload['kind'], link?: number): string =>
      signToken(ctx.trackingSecret, {
        kind,
        deliveryId: ctx.deliveryId,
        occurrence: ctx.occurrence,
        profileId: recipient.profileId,
        ...(link === undefined ? {} : { link }),
        ...(ctx.proofId === undefined ? {} : { proof: ctx.proofId }),
        messageId,
        issuedAt,
      });

    let html: string | undefined;
    if (this.htmlSegments !== undefined) {
      const attributeBase = escapeAttribute(base);
      // A link used several times in the message gets one token.
      const clickUrls: (string | undefined)[] = new Array(this.links.length);
      html = renderTemplate(this.htmlSegments[0]!, data, 'html');
      for (let i = 0; i < this.htmlSlots.length; i++) {
        const slot = this.htmlSlots[i]!;
        if (slot === 'pixel') {
          html += `<img src="${attributeBase}/t/o/${token('open')}" width="1" height="1" alt="" style="display:none">`;
        } else {
          clickUrls[slot.link] ??= `${attributeBase}/t/c/${token('click', slot.link)}`;
          html += clickUrls[slot.link];
        }
        html += renderTemplate(this.htmlSegments[i + 1]!, data, 'html');
      }
    }

    const to = cleanAddress(parseAddress(recipient.address).address);
    const raw = buildMime({
      from: this.content.from,
      to,
      subject,
      messageId,
      date: now,
      replyTo: this.content.replyTo,
      headers: [
        ['List-Unsubscribe', `<${base}/u/${token('unsubscribe')}>`],
        ['List-Unsubscribe-Post', 'List-Unsubscribe=One-Click'],
      ],
      text: this.text === undefined ? undefined : renderTemplate(this.text, data, 'text'),
      html,
    });
    return { messageId, raw, envelope: { from: fromAddress, to: [to] } };
  }

  /**
   * Replaces each tracked href value and the pixel position by a marker, then cuts the source
   * at the markers. The markers use private-use characters absent from the source, so they
   * cannot collide with content; placeholders never span a marker since paths hold no markers.
   */
  private cutHtml(source: string): CompiledTemplate[] {
    let open = 0xe000;
    while (source.includes(String.fromCharCode(open)) || source.includes(String.fromCharCode(open + 1))) open += 2;
    const [start, end] = [String.fromCharCode(open), String.fromCharCode(open + 1)];

    let marked = rewriteLinks(source, (index) => `${start}${index}${end}`);
    // The pixel goes just before the last </body>, or at the very end without one.
    const bodyEnd = marked.toLowerCase().lastIndexOf('</body');
    const pixel = `${start}p${end}`;
    marked = bodyEnd === -1 ? marked + pixel : marked.slice(0, bodyEnd) + pixel + marked.slice(bodyEnd);

    const segments: CompiledTemplate[] = [];
    const marker = new RegExp(`${start}(\\d+|p)${end}`, 'g');
    let last = 0;
    for (const match of marked.matchAll(marker)) {
      segments.push(compileTemplate(marked.slice(last, match.index)));
      this.htmlSlots.push(match[1] === 'p' ? 'pixel' : { link: Number(match[1]) });
      last = match.index + match[0].length;
    }
    segments.push(compileTemplate(marked.slice(last)));
    return segments;
  }
}

/**
 * `<hash@from-domain>`: the same delivery, occurrence and recipient always give the same id
 * (a retried send is recognisably the same message), and any other recipient a different one.
 * The id-left is a hash so that ids of any shape give a valid, fixed-length Message-ID.
 */
export function messageIdFor(deliveryId: string, occurrence: number, profileId: string, fromAddress: string): string {
  const hash = createHash('sha256').update(`${deliveryId}\u0000${occurrence}\u0000${profileId}`).digest('hex');
  return `<${hash.slice(0, 32)}@${messageIdDomain(fromAddress)}>`;
}

function messageIdDomain(fromAddress: string): string {
  const address = parseAddress(fromAddress).address;
  const at = address.lastIndexOf('@');
  const domain = at === -1 ? '' : domainToASCII(address.slice(at + 1).toLowerCase());
  return /^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(domain) ? domain : 'herald.invalid';
}

/** Envelope addresses go into SMTP commands: nothing but the bare address may remain. */
function cleanAddress(address: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
  return address.replace(/[\s\u0000-\u001f\u007f<>]/g, '');
}
