// A growable byte buffer the renderer reuses from one message to the next: bodies and the
// whole message are written into it, so a message costs no intermediate strings or Buffers,
// only the final copy handed to the SMTP client (which keeps it while the message is in flight).

export class ByteSink {
  buffer: Buffer;
  length = 0;

  constructor(initialBytes = 16 * 1024) {
    this.buffer = Buffer.allocUnsafe(initialBytes);
  }

  reset(): void {
    this.length = 0;
  }

  /** Makes room for `bytes` more bytes after `length`. */
  reserve(bytes: number): void {
    const needed = this.length + bytes;
    if (needed <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(needed, this.buffer.length * 2));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }

  writeString(value: string): void {
    // A UTF-16 code unit is at most 3 bytes of UTF-8.
    this.reserve(value.length * 3);
    this.length += this.buffer.write(value, this.length, 'utf8');
  }

  writeBytes(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buffer.set(bytes, this.length);
    this.length += bytes.length;
  }

  /** A new Buffer holding what was written (the sink's own memory is reused by the next message). */
  copy(): Buffer {
    return Buffer.copyBytesFrom(this.buffer, 0, this.length);
  }
}
