// What the sink reads out of a raw message and how it names the file it keeps: the Message-ID
// from the header block (no full MIME parse: the sink never needs the body), and the .eml name.

/** Where the header block ends (the offset of the blank line's terminator), or -1 if not yet seen. */
export function headerEnd(raw: Buffer): number {
  // A message that starts with its blank line has no headers at all.
  if (raw[0] === 0x0a) return 0;
  if (raw[0] === 0x0d && raw[1] === 0x0a) return 0;
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  if (crlf === -1) return lf;
  if (lf === -1) return crlf;
  return Math.min(crlf, lf);
}

/**
 * The Message-ID header's value, unfolded and trimmed, angle brackets kept; null when absent or
 * empty. `raw` may be the whole message or just its start, as long as it holds the header block.
 */
export function readMessageId(raw: Buffer): string | null {
  const end = headerEnd(raw);
  const block = raw.subarray(0, end === -1 ? raw.length : end).toString('utf8');
  // Unfolding removes the line break before a continuation line's leading whitespace (RFC 5322 2.2.3).
  const unfolded = block.replace(/\r?\n(?=[ \t])/g, '');
  for (const line of unfolded.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (line.slice(0, colon).trim().toLowerCase() !== 'message-id') continue;
    const value = line.slice(colon + 1).trim();
    return value === '' ? null : value;
  }
  return null;
}

/** `<seq padded to 8>-<sanitized message id or 'no-id'>.eml`, safe on every file system. */
export function emlFileName(seq: number, messageId: string | null): string {
  const sanitized = (messageId ?? '')
    .replace(/^<|>$/g, '')
    .replace(/[^A-Za-z0-9._@+=-]/g, '_')
    .slice(0, 120);
  return `${String(seq).padStart(8, '0')}-${sanitized === '' ? 'no-id' : sanitized}.eml`;
}

/** The seq of a file named by emlFileName, or null for any other file. */
export function seqOfFileName(name: string): number | null {
  const match = /^(\d{8,})-.*\.eml$/.exec(name);
  return match ? Number(match[1]) : null;
}
