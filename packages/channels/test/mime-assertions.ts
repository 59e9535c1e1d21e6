// Checks on raw messages shared by the MIME and renderer specs: they read the bytes as a mail
// server would, without trusting the code that wrote them.

/** The header block unfolded, one entry per header: [name, value]. */
export function parseHeaderBlock(raw: Buffer): [string, string][] {
  const text = raw.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  return text
    .slice(0, end)
    .replace(/\r\n(?=[ \t])/g, '')
    .split('\r\n')
    .map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon), line.slice(colon + 1).trim()];
    });
}

/** Every line ends with CRLF (no bare CR or LF, CRLF at the end) and is at most 998 bytes. */
export function expectWellFormedLines(raw: Buffer): void {
  const text = raw.toString('latin1');
  expect(text.endsWith('\r\n')).toBe(true);
  expect(text).not.toMatch(/\r(?!\n)|(?<!\r)\n/);
  for (const line of text.slice(0, -2).split('\r\n')) expect(line.length).toBeLessThanOrEqual(998);
}

/** The lines after the header block. */
export function bodyLines(raw: Buffer): string[] {
  const text = raw.toString('latin1');
  return text.slice(text.indexOf('\r\n\r\n') + 4).split('\r\n');
}
