// Raw RFC 5322 / MIME message assembly for the send path: headers, RFC 2047 encoded words,
// quoted-printable bodies, multipart/alternative.
//
// Written by hand instead of through nodemailer's composer because it runs once per recipient:
// a single pass over the bodies into one preallocated buffer, no streams, no randomness. The
// multipart boundary is derived from the Message-ID so the same input always gives the same
// bytes (retries and tests can compare messages), and it starts with "=_", which can never
// occur in quoted-printable output: no body content can forge a part boundary.
import { createHash } from 'node:crypto';

export interface MimeMessage {
  from: string;
  to: string;
  subject: string;
  messageId: string;
  date: Date;
  replyTo?: string;
  headers?: [string, string][];
  text?: string;
  html?: string;
}

/** RFC 5322's recommended limit; the hard limit (998) is only reached by unbreakable words. */
const MAX_LINE = 78;
/** Encoded words are at most 75 characters: 12 of syntax, so at most 63 of base64 (45 bytes). */
const ENCODED_WORD_MAX_BYTES = 45;
const ENCODED_WORD_OVERHEAD = '=?UTF-8?B??='.length;

/** Headers buildMime writes itself: an extra header with one of these names is a caller bug. */
const RESERVED_HEADERS = new Set([
  'from',
  'to',
  'reply-to',
  'subject',
  'date',
  'message-id',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
]);
const HEADER_NAME = /^[!-9;-~]+$/;

export function buildMime(message: MimeMessage): Buffer {
  let head = addressHeader('From', message.from);
  head += addressHeader('To', message.to);
  if (message.replyTo !== undefined) head += addressHeader('Reply-To', message.replyTo);
  head += unstructuredHeader('Subject', message.subject);
  head += `Date: ${formatDate(message.date)}\r\n`;
  const messageId = normalizeMessageId(message.messageId);
  head += `Message-ID: ${messageId}\r\n`;
  head += 'MIME-Version: 1.0\r\n';
  for (const [name, value] of message.headers ?? []) {
    if (!HEADER_NAME.test(name)) throw new TypeError(`invalid header name: ${JSON.stringify(name)}`);
    if (RESERVED_HEADERS.has(name.toLowerCase())) throw new TypeError(`header ${name} is set by buildMime`);
    head += unstructuredHeader(name, value);
  }

  const { text, html } = message;
  if (text !== undefined && html !== undefined) {
    const boundary = boundaryFor(messageId);
    head += `Content-Type: multipart/alternative;\r\n boundary="${boundary}"\r\n\r\n`;
    return Buffer.concat([
      Buffer.from(`${head}--${boundary}\r\n${partHeaders('text/plain')}`),
      encodeQuotedPrintable(text),
      Buffer.from(`\r\n--${boundary}\r\n${partHeaders('text/html')}`),
      encodeQuotedPrintable(html),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
  }
  head += partHeaders(html !== undefined ? 'text/html' : 'text/plain');
  const body = encodeQuotedPrintable(html ?? text ?? '');
  // The message must end with CRLF, but a plain CRLF would add a newline to the body: a
  // trailing soft line break ends the last line without adding anything.
  const endsWithBreak = body.length === 0 || body[body.length - 1] === 0x0a;
  return Buffer.concat([Buffer.from(head), body, endsWithBreak ? EMPTY : SOFT_BREAK]);
}

const EMPTY = Buffer.alloc(0);
const SOFT_BREAK = Buffer.from('=\r\n');

export function partHeaders(type: 'text/plain' | 'text/html'): string {
  return `Content-Type: ${type}; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n`;
}

/** The multipart boundary of a message: derived from its (normalized) Message-ID. */
export function boundaryFor(messageId: string): string {
  return `=_herald_${createHash('sha256').update(messageId).digest('hex').slice(0, 24)}`;
}

// ---- headers ---------------------------------------------------------------------------------

// Line breaks and other controls (not TAB, which is folding whitespace) would end the header
// line: whatever the caller let through, a header value stays one header.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const HEADER_CONTROLS = /[\u0000-\u0008\u000a-\u001f\u007f]/g;

function cleanHeaderValue(value: string): string {
  return value.replace(HEADER_CONTROLS, ' ');
}

// Non-ASCII needs encoded words; so does text that would itself read as an encoded word, and a
// run of non-space too long to fold under the 998-byte line limit.
const NON_ASCII_OR_ENCODED_WORD = /[^\t\x20-\x7e]|=\?/;
const LONGEST_FOLDABLE_RUN = 900;

function needsEncoding(value: string): boolean {
  if (NON_ASCII_OR_ENCODED_WORD.test(value)) return true;
  if (value.length < LONGEST_FOLDABLE_RUN) return false;
  // A linear scan: the regex /[^ \t]{900}/ backtracks over every start of a long token.
  let run = 0;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    run = code === 0x20 || code === 0x09 ? 0 : run + 1;
    if (run >= LONGEST_FOLDABLE_RUN) return true;
  }
  return false;
}

/** One header line (folded, encoded words where needed) ending in CRLF. */
export function unstructuredHeader(name: string, raw: string): string {
  const value = cleanHeaderValue(raw);
  return fold(name, needsEncoding(value) ? encodeWords(value, name.length + 2) : value);
}

/** An address header line (`Name <address>`, the name quoted or encoded as needed) ending in CRLF. */
export function addressHeader(name: string, raw: string): string {
  const { name: displayName, address } = parseAddress(raw);
  if (displayName === '') return fold(name, address);
  return fold(name, `${formatPhrase(displayName, name.length + 2)} <${address}>`);
}

/** RFC 5322 specials: a display name holding one is written as a quoted string. */
const PHRASE_SPECIALS = /[()<>[\]:;@\\,."]/;

function formatPhrase(displayName: string, firstLineUsed: number): string {
  // Clients decode "=?...?=" even inside quotes: a name that looks like one is encoded too.
  if (/[^\t\x20-\x7e]|=\?/.test(displayName)) return encodeWords(displayName, firstLineUsed);
  if (!PHRASE_SPECIALS.test(displayName)) return displayName;
  return `"${displayName.replace(/[\\"]/g, '\\$&')}"`;
}

/** Splits `Name <addr>` (name optionally quoted) or a bare address. CR/LF become spaces. */
export function parseAddress(value: string): { name: string; address: string } {
  const clean = cleanHeaderValue(value).trim();
  const match = /^(.*?)\s*<([^<>]*)>$/s.exec(clean);
  if (match === null) return { name: '', address: clean.replace(/[<>\s]/g, '') };
  let name = match[1]!.trim();
  if (name.length >= 2 && name.startsWith('"') && name.endsWith('"')) name = name.slice(1, -1).replace(/\\(.)/g, '$1');
  return { name: name.trim(), address: match[2]!.replace(/\s/g, '') };
}

/**
 * RFC 2047 B-encoded words of at most 75 characters, split on code point boundaries so each
 * word decodes on its own. The first word is shortened to fit after the header name.
 */
function encodeWords(text: string, firstLineUsed: number): string {
  const firstRoom = Math.floor((MAX_LINE - firstLineUsed - ENCODED_WORD_OVERHEAD) / 4) * 3;
  let budget = Math.min(ENCODED_WORD_MAX_BYTES, Math.max(12, firstRoom));
  const words: string[] = [];
  let chunk = '';
  let chunkBytes = 0;
  for (const char of text) {
    const code = char.codePointAt(0)!;
    const bytes = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    if (chunkBytes + bytes > budget) {
      words.push(`=?UTF-8?B?${Buffer.from(chunk).toString('base64')}?=`);
      chunk = '';
      chunkBytes = 0;
      budget = ENCODED_WORD_MAX_BYTES;
    }
    chunk += char;
    chunkBytes += bytes;
  }
  if (chunk !== '' || words.length === 0) words.push(`=?UTF-8?B?${Buffer.from(chunk).toString('base64')}?=`);
  return words.join(' ');
}

/** A run of whitespace with the word after it; a trailing whitespace run stands alone. */
const FOLD_CHUNKS = /[ \t]*[^ \t]+|[ \t]+$/g;

/** `Name: value` folded before whitespace so lines stay within 78 characters where possible. */
function fold(name: string, value: string): string {
  const first = `${name}: `;
  if (first.length + value.length <= MAX_LINE) return `${first}${value}\r\n`;
  let out = first;
  let lineLength = first.length;
  let lineHasWord = false;
  for (const chunk of value.match(FOLD_CHUNKS) ?? []) {
    // Only fold before whitespace followed by a word: a folded line of nothing but
    // whitespace is forbidden, and the first word always stays on the name's line.
    const foldable = lineHasWord && (chunk[0] === ' ' || chunk[0] === '\t') && /[^ \t]/.test(chunk);
    if (foldable && lineLength + chunk.length > MAX_LINE) {
      out += '\r\n';
      lineLength = 0;
    }
    out += chunk;
    lineLength += chunk.length;
    lineHasWord = true;
  }
  return `${out}\r\n`;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 date-time in UTC, with the numeric zone (the "GMT" of toUTCString is obsolete). */
export function formatDate(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new RangeError('invalid message date');
  const pad = (n: number): string => (n < 10 ? `0${n}` : String(n));
  return (
    `${DAYS[date.getUTCDay()]}, ${pad(date.getUTCDate())} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()} ` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`
  );
}

function normalizeMessageId(raw: string): string {
  const id = cleanHeaderValue(raw).replace(/[\s<>]/g, '');
  if (id === '') throw new TypeError('empty Message-ID');
  return `<${id}>`;
}

// ---- quoted-printable ------------------------------------------------------------------------

const HEX = Buffer.from('0123456789ABCDEF');

const LITERAL = 0;
const ENCODED = 1;
/** Space and tab: literal, except at the end of a line, where transports may strip them. */
const WHITESPACE = 2;
const LINE_BREAK = 3;
const QP_CLASS = new Uint8Array(256).fill(ENCODED);
QP_CLASS.fill(LITERAL, 0x21, 0x7f);
QP_CLASS[0x3d] = ENCODED; // '='
QP_CLASS[0x20] = WHITESPACE;
QP_CLASS[0x09] = WHITESPACE;
QP_CLASS[0x0d] = LINE_BREAK;
QP_CLASS[0x0a] = LINE_BREAK;

/**
 * UTF-8 quoted-printable (RFC 2045) with CRLF line ends and lines of at most 76 characters.
 * Any line break of the input (CRLF, LF, CR) is a hard break. A '.' or "From " at the start of
 * a line is encoded too, so no relay's dot-stuffing or mbox quoting can alter the body. The
 * result has no trailing soft break: the caller decides how the body ends.
 */
export function encodeQuotedPrintable(text: string): Buffer {
  const src = Buffer.from(text, 'utf8');
  const out = Buffer.allocUnsafe(quotedPrintableBound(src.length));
  return out.subarray(0, encodeQuotedPrintableInto(src, 0, src.length, out, 0));
}

/** The most bytes encodeQuotedPrintableInto can write for `n` bytes of input. */
export function quotedPrintableBound(n: number): number {
  // Every byte may become 3 characters; a soft break (3 bytes) follows at least 73 of them.
  return n * 3 + Math.ceil((n * 3) / 73) * 3 + 3;
}

/**
 * encodeQuotedPrintable of the UTF-8 bytes src[start, end), written into `out` from offset `o`
 * (which must have quotedPrintableBound(end - start) bytes of room): the send path encodes a
 * body straight from the buffer it was rendered into. Returns the offset after the output.
 */
export function encodeQuotedPrintableInto(src: Uint8Array, start: number, end: number, out: Uint8Array, o: number): number {
  const state: QuotedPrintableState = { col: 0, index: start, lookedPastEnd: false };
  return encodeQuotedPrintableRange(src, start, end, end, out, o, state);
}

/** Where the encoding of a range stopped: the next range of the same input continues from it. */
export interface QuotedPrintableState {
  /** Column of the output line (0 after a line break). */
  col: number;
  /** The next input byte to encode: `end`, or end + 1 when a CR at the end took the LF after it. */
  index: number;
  /**
   * Whether the output depended on input past `end` other than through the class of the byte at
   * `end` (a "From " test or a CRLF reaching across): such output cannot be reused elsewhere.
   */
  lookedPastEnd: boolean;
}

/**
 * Encodes src[start, end) of an input that runs to `inputEnd`, continuing at `state.col`, and
 * updates `state`. Encoding a body range by range gives the same bytes as encoding it whole; the
 * output of a range depends only on its bytes, the starting column, and the class of the byte
 * after it (end of input, line break, other) unless `state.lookedPastEnd` says otherwise.
 */
export function encodeQuotedPrintableRange(
  src: Uint8Array,
  start: number,
  end: number,
  inputEnd: number,
  out: Uint8Array,
  o: number,
  state: QuotedPrintableState,
): number {
  let col = state.col;
  let lookedPastEnd = false;
  let i = start;
  for (; i < end; i++) {
    const byte = src[i]!;
    const kind = QP_CLASS[byte]!;
    // The bulk of any body: a plain character in the middle of a line with room left.
    if (kind === LITERAL && col > 0 && col < 75) {
      out[o++] = byte;
      col++;
      continue;
    }
    if (kind === LINE_BREAK) {
      if (byte === 0x0d && i + 1 < inputEnd && src[i + 1] === 0x0a) {
        if (i + 1 >= end) lookedPastEnd = true;
        i++;
      }
      out[o++] = 0x0d;
      out[o++] = 0x0a;
      col = 0;
      continue;
    }
    const next = i + 1 < inputEnd ? src[i + 1] : undefined;
    const endOfLine = next === undefined || QP_CLASS[next] === LINE_BREAK;
    // A line may use all 76 characters only when no soft break ('=') has to follow it.
    const limit = endOfLine && next !== undefined ? 76 : 75;
    if (byte === 0x46 && i + 4 >= end) lookedPastEnd = true; // the "From " test may read past the range
    let literal = isLiteral(src, i, inputEnd, kind, col, endOfLine);
    if (col + (literal ? 1 : 3) > limit) {
      out[o++] = 0x3d;
      out[o++] = 0x0d;
      out[o++] = 0x0a;
      col = 0;
      literal = isLiteral(src, i, inputEnd, kind, 0, endOfLine);
    }
    if (literal) {
      out[o++] = byte;
      col += 1;
    } else {
      out[o++] = 0x3d;
      out[o++] = HEX[byte >> 4]!;
      out[o++] = HEX[byte & 0x0f]!;
      col += 3;
    }
  }
  state.col = col;
  state.index = i;
  state.lookedPastEnd = lookedPastEnd;
  return o;
}

/** The class of the byte after a range, as the range's encoding depends on it: 0 none, 1 a line break, 2 any other. */
export function quotedPrintableFollower(src: Uint8Array, index: number, inputEnd: number): number {
  if (index >= inputEnd) return 0;
  return QP_CLASS[src[index]!] === LINE_BREAK ? 1 : 2;
}

function isLiteral(src: Uint8Array, i: number, end: number, kind: number, col: number, endOfLine: boolean): boolean {
  if (kind === WHITESPACE) return !endOfLine;
  if (kind !== LITERAL) return false;
  if (col === 0) {
    const byte = src[i];
    if (byte === 0x2e) return false; // '.'
    if (byte === 0x46 && i + 4 < end && src[i + 1] === 0x72 && src[i + 2] === 0x6f && src[i + 3] === 0x6d && src[i + 4] === 0x20) {
      return false; // "From "
    }
  }
  return true;
}
