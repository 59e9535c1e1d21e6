// The email renderer the send engine calls once per recipient: personalization, click and
// open tracking, one-click unsubscribe headers, Message-ID and the raw MIME bytes.
//
// Everything that depends only on the content is done once in the constructor: placeholders
// parsed, literal text encoded to UTF-8, links found, the pixel placed, the From and Reply-To
// lines formatted. The HTML template is cut at every tracked href and at the pixel position into
// segments, so render() never scans HTML: it writes the segments' bytes and each recipient's
// values into a reused buffer, drops a freshly signed URL into each slot, then quoted-printable
// encodes each body in one pass straight into the message buffer. The bytes are those buildMime
// gives for the same message (a unit test compares them on varied inputs).
import { createHash } from 'node:crypto';
import { domainToASCII } from 'node:url';
import { ByteSink } from './byte-sink.js';
import { escapeAttribute, extractLinks, rewriteLinks } from './links.js';
import {
  addressHeader,
  boundaryFor,
  encodeQuotedPrintableRange,
  formatDate,
  parseAddress,
  partHeaders,
  type QuotedPrintableState,
  quotedPrintableBound,
  quotedPrintableFollower,
  unstructuredHeader,
} from './mime.js';
import {
  type ByteTemplatePart,
  type CompiledTemplate,
  compileTemplate,
  type Escaping,
  render as renderTemplate,
  renderValue,
  toByteParts,
} from './template.js';
import { MessageTokenSigner } from './tracking-token.js';

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

const LIST_UNSUBSCRIBE_POST = unstructuredHeader('List-Unsubscribe-Post', 'List-Unsubscribe=One-Click');
const TEXT_PART_HEADERS = Buffer.from(partHeaders('text/plain'));
const HTML_PART_HEADERS = Buffer.from(partHeaders('text/html'));
const SOFT_BREAK = Buffer.from('=\r\n');
/**
 * Bound on the encoded literal text a renderer keeps. A worker caches up to 200 renderers, so
 * this bounds the cache at 100 MiB outside the heap; a 5 KB template uses about 12 KiB of it.
 */
const ENCODED_LITERALS_MAX_BYTES = 512 * 1024;

/** A literal's encoding for one starting column and follower class, and the column it ends at. */
interface EncodedLiteral {
  bytes: Buffer;
  col: number;
}

export class EmailRenderer {
  /** The tracked links of the HTML template; click tokens carry an index into this list. */
  readonly links: string[];
  private readonly subject: CompiledTemplate;
  private readonly text: ByteTemplatePart[] | undefined;
  /** Template segments with a slot between each two: segments.length === slots.length + 1. */
  private readonly htmlSegments: ByteTemplatePart[][] | undefined;
  private readonly htmlSlots: Slot[];
  private readonly envelopeFrom: string;
  private readonly messageIdDomain: string;
  /** The From line, and the Reply-To line ('' without one): the same for every recipient. */
  private readonly fromLine: string;
  private readonly replyToLine: string;

  // Reused from one render() to the next (render is synchronous: nothing else runs between).
  private readonly body = new ByteSink();
  private readonly message = new ByteSink();
  private readonly clickUrls: (string | undefined)[];
  private signer: MessageTokenSigner | undefined;
  private signerSecret: Buffer | string | undefined;
  private publicUrl: string | undefined;
  private base = '';
  private attributeBase = '';
  private dateSeconds = Number.NaN;
  private dateLine = '';
  /** Where each literal of the template sits in `body` (offsets and parts, in order). */
  private readonly literalStarts: number[] = [];
  private readonly literalParts: Buffer[] = [];
  /**
   * The quoted-printable encoding of each literal, by starting column x 3 + class of the byte
   * after it: it depends on nothing else, so most of a body is encoded once per delivery and
   * copied afterwards.
   */
  private readonly encodedLiterals = new Map<Buffer, (EncodedLiteral | undefined)[]>();
  private encodedLiteralBytes = 0;
  private readonly qp: QuotedPrintableState = { col: 0, index: 0, lookedPastEnd: false };

  constructor(content: EmailContent) {
    this.subject = compileTemplate(content.subject);
    this.text = content.text === undefined ? undefined : toByteParts(compileTemplate(content.text));
    this.links = content.html === undefined ? [] : extractLinks(content.html);
    this.clickUrls = new Array(this.links.length);
    this.htmlSlots = [];
    this.htmlSegments = content.html === undefined ? undefined : this.cutHtml(content.html).map(toByteParts);
    this.envelopeFrom = cleanAddress(parseAddress(content.from).address);
    this.messageIdDomain = messageIdDomain(this.envelopeFrom);
    this.fromLine = addressHeader('From', content.from);
    this.replyToLine = content.replyTo === undefined ? '' : addressHeader('Reply-To', content.replyTo);
  }

  render(recipient: RecipientData, ctx: RenderContext): RenderedEmail {
    const data = { profile: recipient.profile };
    const subject = (ctx.subjectPrefix ?? '') + renderTemplate(this.subject, data, 'header');
    this.usePublicUrl(ctx.publicUrl);
    const now = ctx.now ?? new Date();
    const messageId = messageIdWithDomain(ctx.deliveryId, ctx.occurrence, recipient.profileId, this.messageIdDomain);
    // The tokens carry the Message-ID and their issue time: the gateway records an open or a
    // click from the token alone, with no lookup of the message in the ledger.
    const signer = this.signerFor(ctx.trackingSecret);
    signer.forMessage({
      deliveryId: ctx.deliveryId,
      occurrence: ctx.occurrence,
      profileId: recipient.profileId,
      ...(ctx.proofId === undefined ? {} : { proof: ctx.proofId }),
      messageId,
      issuedAt: Math.floor(now.getTime() / 1000),
    });

    const to = cleanAddress(parseAddress(recipient.address).address);
    const html = this.htmlSegments !== undefined;
    const text = this.text !== undefined;
    let head =
      this.fromLine +
      addressHeader('To', to) +
      this.replyToLine +
      unstructuredHeader('Subject', subject) +
      this.dateHeader(now) +
      `Message-ID: ${messageId}\r\nMIME-Version: 1.0\r\n` +
      unstructuredHeader('List-Unsubscribe', `<${this.base}/u/${signer.sign('unsubscribe')}>`) +
      LIST_UNSUBSCRIBE_POST;
    const out = this.message;
    out.reset();
    if (html && text) {
      const boundary = boundaryFor(messageId);
      head += `Content-Type: multipart/alternative;\r\n boundary="${boundary}"\r\n\r\n--${boundary}\r\n`;
      out.writeString(head);
      out.writeBytes(TEXT_PART_HEADERS);
      this.writeText(data);
      this.writeBody();
      out.writeString(`\r\n--${boundary}\r\n`);
      out.writeBytes(HTML_PART_HEADERS);
      this.writeHtml(data, signer);
      this.writeBody();
      out.writeString(`\r\n--${boundary}--\r\n`);
    } else {
      out.writeString(head);
      out.writeBytes(html ? HTML_PART_HEADERS : TEXT_PART_HEADERS);
      if (html) this.writeHtml(data, signer);
      else this.writeText(data);
      const bodyStart = out.length;
      this.writeBody();
      // The message must end with CRLF, but a plain CRLF would add a newline to the body: a
      // trailing soft line break ends the last line without adding anything.
      if (out.length > bodyStart && out.buffer[out.length - 1] !== 0x0a) out.writeBytes(SOFT_BREAK);
    }
    return { messageId, raw: out.copy(), envelope: { from: this.envelopeFrom, to: [to] } };
  }

  /** Renders the text body's source bytes into `body`. */
  private writeText(data: Record<string, unknown>): void {
    this.resetBody();
    if (this.text !== undefined) this.writeParts(this.text, data, 'text');
  }

  /** Renders the HTML body's source bytes into `body`, a signed URL in each slot. */
  private writeHtml(data: Record<string, unknown>, signer: MessageTokenSigner): void {
    const body = this.body;
    const segments = this.htmlSegments!;
    this.resetBody();
    // A link used several times in the message gets one token.
    this.clickUrls.fill(undefined);
    this.writeParts(segments[0]!, data, 'html');
    for (let i = 0; i < this.htmlSlots.length; i++) {
      const slot = this.htmlSlots[i]!;
      if (slot === 'pixel') {
        body.writeString(
          `<img src="${this.attributeBase}/t/o/${signer.sign('open')}" width="1" height="1" alt="" style="display:none">`,
        );
      } else {
        let url = this.clickUrls[slot.link];
        if (url === undefined) {
          url = `${this.attributeBase}/t/c/${signer.sign('click', slot.link)}`;
          this.clickUrls[slot.link] = url;
        }
        body.writeString(url);
      }
      this.writeParts(segments[i + 1]!, data, 'html');
    }
  }

  private resetBody(): void {
    this.body.reset();
    this.literalStarts.length = 0;
    this.literalParts.length = 0;
  }

  private writeParts(parts: readonly ByteTemplatePart[], data: Record<string, unknown>, escaping: Escaping): void {
    const body = this.body;
    for (const part of parts) {
      if (Buffer.isBuffer(part)) {
        this.literalStarts.push(body.length);
        this.literalParts.push(part);
        body.writeBytes(part);
      } else {
        body.writeString(renderValue(part, data, escaping));
      }
    }
  }

  /**
   * Quoted-printable encodes `body` into the message in one pass: the recipient's values and
   * the signed URLs are encoded, each literal's encoding is copied once it is known.
   */
  private writeBody(): void {
    const out = this.message;
    const src = this.body.buffer;
    const end = this.body.length;
    const qp = this.qp;
    out.reserve(quotedPrintableBound(end));
    const dst = out.buffer;
    let o = out.length;
    qp.col = 0;
    qp.index = 0;
    for (let c = 0; c < this.literalParts.length; c++) {
      const part = this.literalParts[c]!;
      const start = this.literalStarts[c]!;
      const stop = start + part.length;
      if (qp.index < start) o = encodeQuotedPrintableRange(src, qp.index, start, end, dst, o, qp);
      // A CR just before the literal may have taken its LF: encode the rest as it comes.
      if (qp.index !== start) {
        if (qp.index < stop) o = encodeQuotedPrintableRange(src, qp.index, stop, end, dst, o, qp);
        continue;
      }
      let encodings = this.encodedLiterals.get(part);
      const key = qp.col * 3 + quotedPrintableFollower(src, stop, end);
      const known = encodings?.[key];
      if (known !== undefined) {
        dst.set(known.bytes, o);
        o += known.bytes.length;
        qp.col = known.col;
        qp.index = stop;
        continue;
      }
      const from = o;
      o = encodeQuotedPrintableRange(src, start, stop, end, dst, o, qp);
      if (!qp.lookedPastEnd && this.encodedLiteralBytes + (o - from) <= ENCODED_LITERALS_MAX_BYTES) {
        if (encodings === undefined) {
          encodings = [];
          this.encodedLiterals.set(part, encodings);
        }
        encodings[key] = { bytes: Buffer.copyBytesFrom(dst, from, o - from), col: qp.col };
        this.encodedLiteralBytes += o - from;
      }
    }
    if (qp.index < end) o = encodeQuotedPrintableRange(src, qp.index, end, end, dst, o, qp);
    out.length = o;
  }

  private usePublicUrl(publicUrl: string): void {
    if (publicUrl === this.publicUrl) return;
    this.publicUrl = publicUrl;
    this.base = publicUrl.replace(/\/+$/, '');
    this.attributeBase = escapeAttribute(this.base);
  }

  /** One signer per secret; a Buffer secret is compared by content, so one rewritten in place is not stale. */
  private signerFor(secret: Buffer | string): MessageTokenSigner {
    const known = this.signerSecret;
    const same =
      this.signer !== undefined &&
      (typeof secret === 'string' ? secret === known : Buffer.isBuffer(known) && secret.equals(known));
    if (!same) {
      this.signer = new MessageTokenSigner(secret);
      this.signerSecret = typeof secret === 'string' ? secret : Buffer.from(secret);
    }
    return this.signer!;
  }

  /** The Date line, formatted once per second of sending. */
  private dateHeader(now: Date): string {
    const seconds = Math.floor(now.getTime() / 1000);
    if (seconds !== this.dateSeconds) {
      this.dateLine = `Date: ${formatDate(now)}\r\n`;
      this.dateSeconds = seconds;
    }
    return this.dateLine;
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
  return messageIdWithDomain(deliveryId, occurrence, profileId, messageIdDomain(fromAddress));
}

function messageIdWithDomain(deliveryId: string, occurrence: number, profileId: string, domain: string): string {
  const hash = createHash('sha256').update(`${deliveryId}\u0000${occurrence}\u0000${profileId}`).digest('hex');
  return `<${hash.slice(0, 32)}@${domain}>`;
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
