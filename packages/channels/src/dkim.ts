// DKIM signatures (RFC 6376; rsa-sha256, relaxed/relaxed) for a message already in memory.
//
// nodemailer's signer is a stream: the message goes through a header parser and a body
// transform, chunk by chunk, with timers in between. Here the body is canonicalized in one pass
// into a reused buffer and hashed at once, the private key is parsed once, and the signature
// header itself is still nodemailer's (`nodemailer/lib/dkim/sign`: which headers are signed,
// their canonicalization, the tag list and the RSA signature), so the bytes are the ones
// nodemailer's signer writes.
import { createPrivateKey, hash, type KeyObject } from 'node:crypto';
import signHeaders from 'nodemailer/lib/dkim/sign';

export interface DkimOptions {
  domainName: string;
  keySelector: string;
  /** PEM text or a parsed key. */
  privateKey: string | KeyObject;
  /** Colon-separated header names to sign (nodemailer's default list otherwise). */
  headerFieldNames?: string;
  /** Colon-separated header names not to sign. */
  skipFields?: string;
}

interface ParsedHeader {
  key: string;
  line: string;
}

export class DkimSigner {
  private readonly key: KeyObject;
  /** The canonical body is written here; it grows to the largest body seen. */
  private scratch = Buffer.allocUnsafe(16 * 1024);

  /** Throws when the private key cannot be parsed. */
  constructor(private readonly options: DkimOptions) {
    this.key = typeof options.privateKey === 'string' ? createPrivateKey(options.privateKey) : options.privateKey;
  }

  /** The message with its DKIM-Signature header in front. */
  sign(message: Buffer): Buffer {
    const bodyStart = headerLength(message);
    const headers = parseHeaders(message.toString('latin1', 0, bodyStart));
    const bodyHash = this.relaxedBodyHash(message, bodyStart);
    const field = signHeaders(headers, 'sha256', bodyHash, {
      domainName: this.options.domainName,
      keySelector: this.options.keySelector,
      // nodemailer hands the key to crypto's Sign as it is: a KeyObject is not parsed again.
      privateKey: this.key as unknown as string,
      ...(this.options.headerFieldNames === undefined ? {} : { headerFieldNames: this.options.headerFieldNames }),
      ...(this.options.skipFields === undefined ? {} : { skipFields: this.options.skipFields }),
    }) as string | false;
    if (!field) throw new Error('DKIM signing failed');
    return Buffer.concat([Buffer.from(`${field}\r\n`, 'latin1'), message]);
  }

  /**
   * Base64 SHA-256 of the relaxed body (RFC 6376 3.4.4), as nodemailer's RelaxedBody computes
   * it: whitespace at the end of a line dropped, runs of whitespace made one space, every line
   * ended with CRLF (a bare LF ends a line too; a bare CR is content), empty lines at the end
   * ignored, and a body that is not empty ends with CRLF.
   */
  private relaxedBodyHash(message: Buffer, start: number): string {
    const need = (message.length - start) * 2 + 2;
    if (this.scratch.length < need) this.scratch = Buffer.allocUnsafe(need);
    const out = this.scratch;
    let o = 0;
    /** End of the canonical body up to its last line with content (empty lines after it are dropped). */
    let contentEnd = 0;
    let lineHasContent = false;
    let pendingSpace = false;
    let pendingCr = false;
    for (let i = start; i < message.length; i++) {
      const c = message[i]!;
      if (c === 0x0a) {
        out[o++] = 0x0d;
        out[o++] = 0x0a;
        if (lineHasContent) contentEnd = o;
        lineHasContent = false;
        pendingSpace = false;
        pendingCr = false;
        continue;
      }
      if (pendingCr) {
        if (pendingSpace) out[o++] = 0x20;
        out[o++] = 0x0d;
        pendingSpace = false;
        pendingCr = false;
        lineHasContent = true;
      }
      if (c === 0x0d) {
        pendingCr = true;
      } else if (c === 0x20 || c === 0x09) {
        pendingSpace = true;
      } else {
        if (pendingSpace) out[o++] = 0x20;
        out[o++] = c;
        pendingSpace = false;
        lineHasContent = true;
      }
    }
    if (pendingCr) {
      if (pendingSpace) out[o++] = 0x20;
      out[o++] = 0x0d;
      lineHasContent = true;
    }
    if (lineHasContent) {
      out[o++] = 0x0d;
      out[o++] = 0x0a;
      contentEnd = o;
    }
    return hash('sha256', out.subarray(0, contentEnd), 'base64');
  }
}

/** Bytes of the header block with the blank line that ends it (the whole message when there is none). */
function headerLength(message: Buffer): number {
  // The first LF preceded by LF or by CRLF, as nodemailer's MessageParser looks for it.
  for (let i = message.indexOf(0x0a); i !== -1; i = message.indexOf(0x0a, i + 1)) {
    if (i >= 1 && message[i - 1] === 0x0a) return i + 1;
    if (i >= 2 && message[i - 1] === 0x0d && message[i - 2] === 0x0a) return i + 1;
  }
  return message.length;
}

/** Header fields as nodemailer's MessageParser gives them: folded lines joined with '\n', lower-case names. */
function parseHeaders(block: string): ParsedHeader[] {
  const fields: string[] = [];
  for (const rawLine of block.split(/\r?\n/)) {
    if (fields.length > 0 && (rawLine.startsWith(' ') || rawLine.startsWith('\t'))) fields[fields.length - 1] += `\n${rawLine}`;
    else fields.push(rawLine);
  }
  const headers: ParsedHeader[] = [];
  for (const line of fields) {
    if (!/[^ \t\r]/.test(line)) continue;
    headers.push({ key: trimSpaceAndTab(line.slice(0, Math.max(0, line.indexOf(':')))).toLowerCase(), line });
  }
  return headers;
}

function trimSpaceAndTab(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && (text.charCodeAt(start) === 0x20 || text.charCodeAt(start) === 0x09)) start++;
  while (end > start && (text.charCodeAt(end - 1) === 0x20 || text.charCodeAt(end - 1) === 0x09)) end--;
  return text.slice(start, end);
}
