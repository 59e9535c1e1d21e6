// The capture sink: a real SMTP server on loopback (smtp-server) that accepts everything the rules
// do not refuse, keeps an index of every accepted message (and its .eml file when storing to disk),
// and shuts down promptly whatever its clients are doing.
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join, resolve } from 'node:path';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerDataStream,
  type SMTPServerError,
  type SMTPServerSession,
} from 'smtp-server';
import { emlFileName, headerEnd, readMessageId, seqOfFileName } from './message.js';
import { RuleBook, type SinkRule } from './rules.js';
import { RulesFile } from './rules-file.js';

export interface CapturedMessage {
  /** 1, 2, 3… in arrival order; with a disk store it continues after the files already in `dir`. */
  seq: number;
  /** The Message-ID header, unfolded and trimmed, angle brackets kept; null when absent. */
  messageId: string | null;
  /** The envelope sender (MAIL FROM), '' for the null sender. */
  from: string;
  /** The envelope recipients the sink accepted (RCPT TO), in the order given. */
  to: string[];
  /** Bytes of the message as received (after dot-unstuffing). */
  size: number;
  /** ISO timestamp of the MAIL FROM that opened this message's transaction. */
  startedAt: string;
  /** ISO timestamp of the moment the message was accepted. */
  receivedAt: string;
  /** Absolute path of the .eml file (disk store only). */
  file?: string;
}

export interface CaptureSinkOptions {
  /** Default '127.0.0.1'. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Where messages are kept as .eml files (created if missing). Omit to keep nothing on disk. */
  dir?: string;
  /** 'disk' (write each message to dir), 'memory' (index only: no bodies kept), default 'disk' when dir is set else 'memory'. */
  store?: 'disk' | 'memory';
  rules?: SinkRule[];
  /** A JSON file with SinkRule[] re-read when its mtime changes (checked at most once per second), so a user can edit rules of a running sink. */
  rulesFile?: string;
  /** Told when the rules file stops parsing once the sink runs (the last good rules stay in force). */
  onRulesFileError?: (error: Error) => void;
  /** Default 1000. */
  maxClients?: number;
  /** Max message size in bytes, default 25 MiB (answer 552 beyond). */
  maxSize?: number;
}

export interface CaptureSink {
  /** e.g. 'smtp://127.0.0.1:2525' */
  url: string;
  port: number;
  /** Accepted messages, in arrival order (index only). */
  messages(): CapturedMessage[];
  count(): number;
  /** How many accepted messages had each Message-ID (to find duplicates). */
  messageIdCounts(): Map<string, number>;
  /** Replaces the rules given in code (a rules file's rules stay, after these). Throws on invalid rules. */
  setRules(rules: SinkRule[]): void;
  close(): Promise<void>;
}

const DEFAULT_MAX_SIZE = 25 * 1024 * 1024;
/** In a memory store only the header block is kept, and only this much of it. */
const MAX_HEADER_BYTES = 256 * 1024;
const HANG = Symbol('hang');

function smtpError(code: number, message: string): SMTPServerError {
  const error: SMTPServerError = new Error(message);
  error.responseCode = code;
  return error;
}

export async function startCaptureSink(options: CaptureSinkOptions = {}): Promise<CaptureSink> {
  const store = options.store ?? (options.dir === undefined ? 'memory' : 'disk');
  if (store === 'disk' && options.dir === undefined) {
    throw new Error("capture sink: store 'disk' needs a dir to write messages to");
  }
  const book = new RuleBook();
  book.setRules(options.rules ?? []);
  let dir: string | null = null;
  let lastSeq = 0;
  if (store === 'disk') {
    dir = resolve(options.dir!);
    await mkdir(dir, { recursive: true });
    // Numbering continues after the files of an earlier run, so a restart never overwrites them.
    for (const name of await readdir(dir)) lastSeq = Math.max(lastSeq, seqOfFileName(name) ?? 0);
  }
  let rulesFile: RulesFile | null = null;
  if (options.rulesFile !== undefined) {
    rulesFile = new RulesFile(
      resolve(options.rulesFile),
      (rules) => book.setFileRules(rules),
      options.onRulesFileError ?? (() => {}),
    );
    await rulesFile.start();
  }
  const sink = new Sink(book, rulesFile, dir, lastSeq, options);
  try {
    await sink.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  } catch (error) {
    await rulesFile?.stop();
    throw error;
  }
  return sink;
}

class Sink implements CaptureSink {
  url = '';
  port = 0;
  private readonly server: SMTPServer;
  private readonly maxSize: number;
  private readonly index: CapturedMessage[] = [];
  private readonly idCounts = new Map<string, number>();
  private readonly sockets = new Set<Socket>();
  /** When each session's current transaction began (its MAIL FROM): a session is one connection. */
  private readonly transactionStart = new WeakMap<SMTPServerSession, number>();
  /** Messages being received or written: close() lets them settle so their files are complete. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private closing: Promise<void> | null = null;

  constructor(
    private readonly book: RuleBook,
    private readonly rulesFile: RulesFile | null,
    private readonly dir: string | null,
    private lastSeq: number,
    options: CaptureSinkOptions,
  ) {
    this.maxSize = options.maxSize ?? DEFAULT_MAX_SIZE;
    this.server = new SMTPServer({
      logger: false,
      banner: 'Herald capture sink',
      disabledCommands: ['STARTTLS', 'AUTH'],
      disableReverseLookup: true,
      maxClients: options.maxClients ?? 1000,
      size: this.maxSize,
      // 552 for an oversized message whatever onData says, and SIZE is advertised so clients can
      // refuse to send one at all.
      rejectOversized: true,
      onMailFrom: (_address, session, callback) => {
        this.transactionStart.set(session, Date.now());
        callback();
      },
      onRcptTo: (address, session, callback) => this.onRcptTo(address, session, callback),
      onData: (stream, session, callback) => this.onData(stream, session, callback),
    });
    // Without a listener smtp-server's 'error' (a client resetting mid-transaction, as a timed-out
    // client of a 'hang' rule does) would crash the process; such errors are the client's business.
    this.server.on('error', () => {});
    this.server.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolvePromise, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.server.off('error', onError);
        const address = this.server.server.address();
        this.port = typeof address === 'object' && address !== null ? address.port : port;
        this.url = `smtp://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
        resolvePromise();
      });
    });
  }

  messages(): CapturedMessage[] {
    return this.index.map((message) => ({ ...message, to: [...message.to] }));
  }

  count(): number {
    return this.index.length;
  }

  messageIdCounts(): Map<string, number> {
    return new Map(this.idCounts);
  }

  setRules(rules: SinkRule[]): void {
    this.book.setRules(rules);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolveClosed) => this.server.close(() => resolveClosed()));
      // smtp-server's close waits (30 s by default) for clients to leave; a sink has nothing to
      // finish for them, and a 'hang' client would never leave on its own.
      for (const socket of this.sockets) socket.destroy();
      await closed;
      await Promise.allSettled([...this.inFlight, this.rulesFile?.stop()]);
    })();
    return this.closing;
  }

  private onRcptTo(
    address: SMTPServerAddress,
    _session: SMTPServerSession,
    callback: (error?: Error | null) => void,
  ): void {
    const decision = this.book.decide('rcpt', address.address);
    // Validation keeps 'hang' out of the rcpt stage.
    callback(decision && typeof decision.code === 'number' ? smtpError(decision.code, decision.message) : null);
  }

  private onData(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    callback: (error?: Error | null, message?: string) => void,
  ): void {
    const receiving = this.receive(stream, session);
    this.inFlight.add(receiving);
    const answer = (outcome: number | SMTPServerError | typeof HANG) => {
      this.inFlight.delete(receiving);
      // A hung message is never answered: the client times out, or close() drops it.
      if (outcome === HANG) return;
      if (typeof outcome === 'number') callback(null, `OK: captured as #${outcome}`);
      else callback(outcome);
    };
    void receiving.then(answer, (error: unknown) => answer(smtpError(451, `capture sink failed: ${String(error)}`)));
  }

  /** Reads the whole message, then decides: the accepted seq, an error to answer, or HANG. */
  private async receive(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
  ): Promise<number | SMTPServerError | typeof HANG> {
    const keepBody = this.dir !== null;
    const chunks: Buffer[] = [];
    let size = 0;
    let keeping = true;
    try {
      // Always read to the end: an answer before the client's final '.' would desync the session.
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (!keeping) continue;
        chunks.push(chunk);
        if (size > this.maxSize) {
          keeping = false;
          chunks.length = 0;
        } else if (!keepBody && (size > MAX_HEADER_BYTES || headerEnd(Buffer.concat(chunks)) !== -1)) {
          keeping = false;
        }
      }
    } catch (error) {
      // The client went away mid-message; nobody is left to answer.
      return smtpError(451, `message not received in full: ${(error as Error).message}`);
    }
    if (stream.sizeExceeded || size > this.maxSize) {
      return smtpError(552, `message exceeds fixed maximum message size ${this.maxSize}`);
    }

    // The first recipient a data rule matches decides for the whole message.
    for (const recipient of session.envelope.rcptTo) {
      const decision = this.book.decide('data', recipient.address);
      if (!decision) continue;
      return decision.code === 'hang' ? HANG : smtpError(decision.code, decision.message);
    }

    // Read before the write's await: smtp-server resets the session once the message is answered.
    const mailFrom = session.envelope.mailFrom;
    const to = session.envelope.rcptTo.map((recipient) => recipient.address);
    const raw = Buffer.concat(chunks);
    const messageId = readMessageId(raw);
    const seq = ++this.lastSeq;
    let file: string | undefined;
    if (this.dir !== null) {
      file = join(this.dir, emlFileName(seq, messageId));
      try {
        await writeFile(file, raw, { flag: 'wx' });
      } catch (error) {
        return smtpError(451, `capture sink could not store the message: ${(error as Error).message}`);
      }
    }
    const captured: CapturedMessage = {
      seq,
      messageId,
      from: mailFrom ? mailFrom.address : '',
      to,
      size,
      startedAt: new Date(this.transactionStart.get(session) ?? Date.now()).toISOString(),
      receivedAt: new Date().toISOString(),
      ...(file === undefined ? {} : { file }),
    };
    this.record(captured);
    return seq;
  }

  /** Adds to the index before the 250 goes out, so a client that got its 250 finds it there. */
  private record(captured: CapturedMessage): void {
    // Concurrent writes can finish out of order; the index stays in seq order.
    let at = this.index.length;
    while (at > 0 && this.index[at - 1]!.seq > captured.seq) at--;
    this.index.splice(at, 0, captured);
    if (captured.messageId !== null) {
      this.idCounts.set(captured.messageId, (this.idCounts.get(captured.messageId) ?? 0) + 1);
    }
  }
}
