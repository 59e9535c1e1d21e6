// Herald's SMTP client for the bulk send path: one connection, one message at a time, the message
// handed over as one Buffer and written in one write: as it is when its lines end with CRLF and
// none starts with '.' (what the renderer writes), else prepared once (prepareMessage).
//
// Why not nodemailer's SMTPConnection: per message it runs the data through a stream transform
// that escapes dots byte by byte, emits events and logs through a logger object; this client
// writes the envelope in one write and the message in another and reads the answers from one
// reused read buffer. The session (greeting, EHLO, STARTTLS, AUTH) is plain async code: it runs
// once per connection. The transaction is a small state machine with pre-bound handlers, so a
// message costs one promise and no closure.
//
// - ESMTP PIPELINING (RFC 2920) when the server offers it: MAIL FROM, every RCPT TO and DATA
//   leave in one write and the answers are read in order; without it, lock-step.
// - STARTTLS when offered (or required), `secure` for implicit TLS, AUTH PLAIN, LOGIN or
//   CRAM-MD5 (in that order of preference among those the server offers, unless a method is
//   named).
// - Failures carry what the send engine classifies on: the reply code, the command it answered
//   (CONN for the connection and the greeting, EHLO, STARTTLS, AUTH <method>, MAIL FROM, RCPT TO,
//   DATA), whether any byte of the message went out, and whether the whole message was out
//   when the server fell silent (the message may have arrived).
import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import { createHmac } from 'node:crypto';

export interface SmtpClientOptions {
  /** Default 'localhost'. */
  host?: string;
  /** Default 465 with `secure`, else 587. */
  port?: number;
  /** Implicit TLS (smtps). Default: true on port 465. */
  secure?: boolean;
  /** Refuse to go on without STARTTLS. */
  requireTLS?: boolean;
  /** Never STARTTLS, even when offered. */
  ignoreTLS?: boolean;
  /** Go on in plain text (without AUTH) when STARTTLS is refused. */
  opportunisticTLS?: boolean;
  /** Options of tls.connect (rejectUnauthorized, ca, servername, ...). */
  tls?: tls.ConnectionOptions;
  /** The name sent with EHLO. Default: the host name when it is a FQDN, else [127.0.0.1]. */
  name?: string;
  localAddress?: string;
  auth?: { user: string; pass: string; method?: string };
  connectionTimeoutMs: number;
  greetingTimeoutMs: number;
  /** Longest silence while an answer is awaited. */
  socketTimeoutMs: number;
  /** Pipeline the envelope when the server offers PIPELINING (default true). */
  pipelining?: boolean;
}

export type SmtpErrorCode = 'ECONNECTION' | 'ETIMEDOUT' | 'EENVELOPE' | 'EMESSAGE' | 'EAUTH' | 'ETLS' | 'EPROTOCOL';

export class SmtpError extends Error {
  /** The server's reply code, when a reply caused the failure. */
  responseCode?: number;
  /** The server's reply (lines joined with '\n'). */
  response?: string;
  timeoutType?: 'CONNECTION_TIMEOUT' | 'GREETING_TIMEOUT' | 'SOCKET_TIMEOUT';
  /** A byte of the message went out: the message is no longer untouched. */
  messageStarted = false;
  /** The whole message and its final dot had left this process (written to the socket): only the server's verdict was missing. */
  afterData = false;

  constructor(
    message: string,
    readonly code: SmtpErrorCode,
    /** The command the failure answered: CONN, EHLO, HELO, STARTTLS, AUTH <method>, MAIL FROM, RCPT TO, DATA, RSET; API for bad input. */
    readonly command: string,
    reply?: Reply,
  ) {
    super(reply ? `${message}: ${reply.text}` : message);
    this.name = 'SmtpError';
    if (reply) {
      this.responseCode = reply.code;
      this.response = reply.text;
    }
  }
}

export interface SmtpReply {
  code: number;
  /** The reply, lines joined with '\n'. */
  text: string;
}

export interface SmtpSendResult extends SmtpReply {
  /** Recipients the server refused while it accepted the message for others. */
  rejected: { recipient: string; reply: SmtpReply }[];
}

interface Reply {
  code: number;
  text: string;
}

type ReplyHandler = (code: number, text: string) => void;

const DOT_CRLF = Buffer.from('.\r\n');
const CRLF_DOT_CRLF = Buffer.from('\r\n.\r\n');
/** The SASL mechanisms the client speaks, the one it prefers first. */
const AUTH_PREFERENCE = ['PLAIN', 'LOGIN', 'CRAM-MD5'];
const READ_BUFFER_BYTES = 16 * 1024;
/** A reply longer than this is not SMTP: the connection is dropped. */
const MAX_REPLY_CHARS = 64 * 1024;
/** After QUIT, how long the server has to answer before the socket is destroyed. */
const QUIT_GRACE_MS = 1000;

/** One SMTP session. `SmtpConnection.open()` connects and sets it up; then send() a message at a time. */
export class SmtpConnection {
  /** The server offered PIPELINING (and the client uses it). */
  pipelining = false;
  /** The server offered SMTPUTF8. */
  smtpUtf8 = false;
  /** Set once the connection can carry no more messages (closed, closing, or failed). */
  closed = false;
  /** Called once when the connection ends, whatever the cause. */
  onClose: (() => void) | undefined;

  private socket!: net.Socket;
  private readonly options: SmtpClientOptions;
  private readonly host: string;
  private readonly port: number;
  private readonly secure: boolean;
  private readonly name: string;
  /** Reply handlers, in the order of the commands written. */
  private readonly handlers: ReplyHandler[] = [];
  private handlerHead = 0;
  /** Command each pending handler answers (for a timeout's or a drop's error). */
  private readonly handlerCommands: string[] = [];
  private replyText = '';
  private partialLine = '';
  private readonly replyTimer: NodeJS.Timeout;
  /** Why the connection ended (the first cause seen). */
  private endError: SmtpError | undefined;
  /** A reply no command asked for (a server ending an idle session says "421 ..."). */
  private unsolicited: Reply | undefined;
  private setupFailure: ((error: SmtpError) => void) | undefined;
  private awaitingGreeting = false;

  // The transaction in flight (one at a time).
  private busy = false;
  private txResolve: ((result: SmtpSendResult) => void) | undefined;
  private txReject: ((error: SmtpError) => void) | undefined;
  private txRecipients: readonly string[] = [];
  private txNextRecipient = 0;
  private txAccepted = 0;
  private txRejected: { recipient: string; reply: SmtpReply }[] = [];
  private txError: SmtpError | undefined;
  private txMessage: Buffer | undefined;
  private txMessageStarted = false;
  private txAfterData = false;
  // Pre-bound, so that a transaction allocates no closure.
  private readonly onMailReply: ReplyHandler = (code, text) => this.mailReplied(code, text);
  private readonly onRcptReply: ReplyHandler = (code, text) => this.rcptReplied(code, text);
  private readonly onDataReply: ReplyHandler = (code, text) => this.dataReplied(code, text);
  private readonly onMessageReply: ReplyHandler = (code, text) => this.messageReplied(code, text);
  private readonly onDotAfterRefusal: ReplyHandler = () => this.finish();
  private readonly onMessageWritten = (error?: Error | null) => {
    // Only for the transaction in flight (a refusal may have ended it before the write completed).
    if (error || !this.busy || !this.txMessageStarted || this.closed) return;
    this.txAfterData = true;
    // The wait for the verdict counts from here, not from when a large message was queued.
    this.replyTimer.refresh();
  };

  private constructor(options: SmtpClientOptions) {
    this.options = options;
    this.host = options.host || 'localhost';
    this.secure = options.secure ?? options.port === 465;
    this.port = options.port || (this.secure ? 465 : 587);
    this.name = (options.name || defaultClientName()).replace(/[\r\n]+/g, '');
    // One timer for the connection's life, refreshed (not re-created) for each command: it fires
    // only when an awaited reply is late (it may fire while idle, and then does nothing).
    this.replyTimer = setTimeout(() => this.onReplyTimeout(), options.socketTimeoutMs);
    this.replyTimer.unref();
  }

  /** Connects, reads the greeting, says EHLO, upgrades with STARTTLS and logs in as the options say. */
  static async open(options: SmtpClientOptions): Promise<SmtpConnection> {
    const connection = new SmtpConnection(options);
    try {
      await connection.setUp();
    } catch (error) {
      connection.destroy(error as SmtpError);
      throw error;
    }
    return connection;
  }

  /**
   * Sends one message: `message` as it should arrive (not dot-stuffed). One with CRLF line ends
   * and no line starting with '.' (the renderer's output) is written as it is; any other is
   * prepared once here (prepareMessage), at the cost of a copy. Resolves with the server's reply to
   * the data; rejects with an SmtpError. A refused envelope or message leaves the session
   * usable after reset().
   */
  send(from: string, to: readonly string[], message: Buffer): Promise<SmtpSendResult> {
    if (this.busy) return Promise.reject(new SmtpError('a transaction is already in flight on this connection', 'EPROTOCOL', 'API'));
    const invalid = invalidEnvelope(from, to);
    if (invalid) return Promise.reject(new SmtpError(invalid, 'EENVELOPE', 'API'));
    if (this.closed || this.unsolicited) return Promise.reject(this.goneError('MAIL FROM'));
    this.busy = true;
    this.txRecipients = to;
    this.txNextRecipient = 0;
    this.txAccepted = 0;
    if (this.txRejected.length > 0) this.txRejected = [];
    this.txError = undefined;
    this.txMessage = goesOutAsIs(message) ? message : prepareMessage(message);
    this.txMessageStarted = false;
    this.txAfterData = false;
    const promise = new Promise<SmtpSendResult>((resolve, reject) => {
      this.txResolve = resolve;
      this.txReject = reject;
    });
    const utf8 = this.smtpUtf8 && (!isAscii(from) || to.some((address) => !isAscii(address)));
    let commands = utf8 ? `MAIL FROM:<${from}> SMTPUTF8\r\n` : `MAIL FROM:<${from}>\r\n`;
    this.expect(this.onMailReply, 'MAIL FROM');
    if (this.pipelining) {
      for (const recipient of to) {
        commands += `RCPT TO:<${recipient}>\r\n`;
        this.expect(this.onRcptReply, 'RCPT TO');
      }
      commands += 'DATA\r\n';
      this.expect(this.onDataReply, 'DATA');
    }
    this.write(commands);
    return promise;
  }

  /** RSET: ends a refused transaction and keeps the session. Rejects (and the connection is dropped) when it is not answered 2xx. */
  reset(): Promise<void> {
    if (this.closed || this.unsolicited) return Promise.reject(this.goneError('RSET'));
    return new Promise((resolve, reject) => {
      this.expect((code, text) => {
        this.setupFailure = undefined;
        if (code >= 200 && code < 300) {
          resolve();
          return;
        }
        const error = new SmtpError('RSET refused', 'EPROTOCOL', 'RSET', { code, text });
        this.destroy(error);
        reject(error);
      }, 'RSET');
      this.setupFailure = reject;
      this.write('RSET\r\n');
    });
  }

  /** QUIT, then the socket is closed (at the latest QUIT_GRACE_MS later). */
  quit(): void {
    if (this.closed) return;
    this.closed = true;
    this.expect(() => this.socket.end(), 'QUIT');
    this.socket.write('QUIT\r\n');
    setTimeout(() => this.socket.destroy(), QUIT_GRACE_MS).unref();
  }

  /** Closes the connection at once. */
  close(): void {
    this.destroy(new SmtpError('the connection was closed by the client', 'ECONNECTION', 'CONN'));
  }

  // ---- the session ----------------------------------------------------------------------------

  private async setUp(): Promise<void> {
    const options = this.options;
    await this.connectSocket();
    const greeting = await this.awaitReply('CONN', options.greetingTimeoutMs, 'GREETING_TIMEOUT');
    if (greeting.code !== 220) throw new SmtpError('invalid greeting', 'EPROTOCOL', 'CONN', greeting);
    let ehlo = await this.command(`EHLO ${this.name}`, 'EHLO');
    let extensions: string | undefined = ehlo.text;
    if (ehlo.code === 421) throw new SmtpError('the server ends the session', 'ECONNECTION', 'EHLO', ehlo);
    if (ehlo.code < 200 || ehlo.code >= 300) {
      if (options.requireTLS) throw new SmtpError('EHLO failed but HELO does not support the required STARTTLS', 'ECONNECTION', 'EHLO', ehlo);
      const helo = await this.command(`HELO ${this.name}`, 'HELO');
      if (helo.code < 200 || helo.code >= 300) throw new SmtpError('invalid HELO', 'EPROTOCOL', 'HELO', helo);
      extensions = undefined;
    }
    let authAllowed = true;
    if (extensions !== undefined && !this.secure && !options.ignoreTLS && (hasExtension(extensions, 'STARTTLS') || options.requireTLS)) {
      const answer = await this.command('STARTTLS', 'STARTTLS');
      if (answer.code < 200 || answer.code >= 300) {
        if (!options.opportunisticTLS || options.requireTLS) throw new SmtpError('STARTTLS refused', 'ETLS', 'STARTTLS', answer);
        // Credentials never go over a session that failed to encrypt.
        authAllowed = false;
      } else {
        await this.upgrade();
        ehlo = await this.command(`EHLO ${this.name}`, 'EHLO');
        if (ehlo.code < 200 || ehlo.code >= 300) throw new SmtpError('EHLO refused after STARTTLS', 'EPROTOCOL', 'EHLO', ehlo);
        extensions = ehlo.text;
      }
    }
    this.pipelining = options.pipelining !== false && extensions !== undefined && hasExtension(extensions, 'PIPELINING');
    this.smtpUtf8 = extensions !== undefined && hasExtension(extensions, 'SMTPUTF8');
    if (options.auth) {
      if (!authAllowed) throw new SmtpError('STARTTLS refused: no credentials over plain text', 'ETLS', 'STARTTLS');
      await this.login(options.auth, extensions === undefined ? [] : authMechanisms(extensions));
    }
    this.setupFailure = undefined;
  }

  private connectSocket(): Promise<void> {
    const { options } = this;
    return this.setUpStep(options.connectionTimeoutMs, 'CONNECTION_TIMEOUT', `Connection timeout: no connection to ${this.host}:${this.port}`, 'CONN', (done) => {
      if (this.secure) {
        const socket = tls.connect({ host: this.host, port: this.port, ...this.localAddress(), ...this.serverName(), ...options.tls });
        this.attach(socket, false);
        socket.once('secureConnect', done);
        return;
      }
      const readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
      const socket: net.Socket = net.connect({
        host: this.host,
        port: this.port,
        ...this.localAddress(),
        // Replies are read into one buffer, reused, without a stream in between (and no longer
        // once STARTTLS wrapped the socket).
        onread: {
          buffer: readBuffer,
          callback: (bytes) => {
            if (this.socket === socket) this.received(readBuffer, bytes);
            return true;
          },
        },
      });
      this.attach(socket, true);
      socket.once('connect', done);
    });
  }

  private localAddress(): { localAddress?: string } {
    return this.options.localAddress === undefined ? {} : { localAddress: this.options.localAddress };
  }

  /** SNI: the host name, never an IP address. */
  private serverName(): { servername?: string } {
    return net.isIP(this.host) ? {} : { servername: this.host };
  }

  private attach(socket: net.Socket, usesOnread: boolean): void {
    this.socket = socket;
    socket.setNoDelay(true);
    if (!usesOnread) socket.on('data', (chunk: Buffer) => this.received(chunk, chunk.length));
    socket.on('error', (error: NodeJS.ErrnoException) => this.destroy(this.socketError(error)));
    socket.on('close', () => this.destroy(new SmtpError('Connection closed unexpectedly', 'ECONNECTION', this.pendingCommand() ?? 'CONN')));
  }

  /** The TLS handshake after the server's 220 to STARTTLS. */
  private upgrade(): Promise<void> {
    const plain = this.socket;
    plain.removeAllListeners('error');
    plain.removeAllListeners('close');
    return this.setUpStep(this.options.socketTimeoutMs, 'SOCKET_TIMEOUT', 'Timeout: no TLS handshake', 'STARTTLS', (done) => {
      const secured = tls.connect({ socket: plain, ...this.serverName(), ...this.options.tls });
      this.socket = secured;
      // A handshake that fails is a TLS failure, not a dropped connection.
      const failed = (error: Error) => this.destroy(new SmtpError(`Error initiating TLS - ${error.message}`, 'ETLS', 'STARTTLS'));
      secured.once('error', failed);
      plain.once('close', () => failed(new Error('the connection closed during the TLS handshake')));
      secured.once('secureConnect', () => {
        secured.off('error', failed);
        plain.removeAllListeners('close');
        this.attach(secured, false);
        done();
      });
    });
  }

  /**
   * One step of the session set-up: `start` calls done() when it completed; the connection
   * failing meanwhile (destroy) rejects the step, and so does `timeoutMs` without done().
   */
  private setUpStep(timeoutMs: number, timeoutType: NonNullable<SmtpError['timeoutType']>, timeoutText: string, command: string, start: (done: () => void) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const error = new SmtpError(`${timeoutText} within ${timeoutMs} ms`, 'ETIMEDOUT', command);
        error.timeoutType = timeoutType;
        this.destroy(error);
      }, timeoutMs);
      this.setupFailure = (error) => {
        clearTimeout(timer);
        reject(error);
      };
      start(() => {
        clearTimeout(timer);
        this.setupFailure = undefined;
        resolve();
      });
    });
  }

  private async login(auth: NonNullable<SmtpClientOptions['auth']>, offered: string[]): Promise<void> {
    // nodemailer's order of preference, whatever order the server lists them in.
    const method = auth.method?.trim().toUpperCase() || AUTH_PREFERENCE.find((m) => offered.includes(m)) || 'PLAIN';
    const command = `AUTH ${method}`;
    const base64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
    let answer: Reply;
    if (method === 'PLAIN') {
      answer = await this.command(`AUTH PLAIN ${base64(`\u0000${auth.user}\u0000${auth.pass}`)}`, command);
    } else if (method === 'LOGIN') {
      answer = await this.command('AUTH LOGIN', command);
      if (answer.code === 334) answer = await this.command(base64(auth.user), command);
      if (answer.code === 334) answer = await this.command(base64(auth.pass), command);
    } else if (method === 'CRAM-MD5') {
      answer = await this.command('AUTH CRAM-MD5', command);
      if (answer.code === 334) {
        const challenge = Buffer.from(answer.text.slice(4), 'base64').toString('latin1');
        answer = await this.command(base64(`${auth.user} ${createHmac('md5', auth.pass).update(challenge, 'latin1').digest('hex')}`), command);
      }
    } else {
      throw new SmtpError(`unsupported AUTH method ${method}`, 'EAUTH', 'API');
    }
    if (answer.code < 200 || answer.code >= 300) throw new SmtpError('Invalid login', 'EAUTH', command, answer);
  }

  /** Writes one command and waits for its reply (session set-up only). */
  private command(line: string, name: string): Promise<Reply> {
    const reply = this.awaitReply(name);
    this.write(`${line}\r\n`);
    return reply;
  }

  /** The next reply (session set-up only); the greeting has a timeout of its own. */
  private awaitReply(name: string, timeoutMs?: number, timeoutType?: SmtpError['timeoutType']): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              const error = new SmtpError(`Greeting never received within ${timeoutMs} ms`, 'ETIMEDOUT', name);
              error.timeoutType = timeoutType;
              this.destroy(error);
            }, timeoutMs);
      this.setupFailure = (error) => {
        clearTimeout(timer);
        reject(error);
      };
      this.awaitingGreeting = timer !== undefined;
      this.expect((code, text) => {
        clearTimeout(timer);
        this.awaitingGreeting = false;
        this.setupFailure = undefined;
        resolve({ code, text });
      }, name);
    });
  }

  // ---- the transaction ------------------------------------------------------------------------

  private mailReplied(code: number, text: string): void {
    if (code < 200 || code >= 300) {
      this.txError = new SmtpError('Mail command failed', 'EENVELOPE', 'MAIL FROM', { code, text });
      // Pipelined, the RCPT TO and DATA replies are still to come: they are read, then the
      // transaction ends with this error.
      if (!this.pipelining) this.finish();
      return;
    }
    if (!this.pipelining) this.nextRecipient();
  }

  private nextRecipient(): void {
    const recipient = this.txRecipients[this.txNextRecipient];
    if (recipient === undefined) {
      if (this.txAccepted === 0) {
        this.finish();
        return;
      }
      this.expect(this.onDataReply, 'DATA');
      this.write('DATA\r\n');
      return;
    }
    this.expect(this.onRcptReply, 'RCPT TO');
    this.write(`RCPT TO:<${recipient}>\r\n`);
  }

  private rcptReplied(code: number, text: string): void {
    const recipient = this.txRecipients[this.txNextRecipient++]!;
    if (code >= 200 && code < 300) {
      this.txAccepted++;
    } else {
      this.txRejected.push({ recipient, reply: { code, text } });
      if (this.txError === undefined && this.txAccepted === 0 && this.txNextRecipient === this.txRecipients.length) {
        // Every recipient refused: the first refusal is the answer.
        const first = this.txRejected[0]!;
        this.txError = new SmtpError(`Can't send mail - all recipients were rejected`, 'EENVELOPE', 'RCPT TO', first.reply);
      }
    }
    if (!this.pipelining) this.nextRecipient();
  }

  private dataReplied(code: number, text: string): void {
    if (code === 354) {
      if (this.txError !== undefined || this.txAccepted === 0) {
        // RFC 2920: DATA accepted after the envelope failed: end it with a lone dot.
        this.expect(this.onDotAfterRefusal, 'DATA');
        this.write('.\r\n');
        return;
      }
      const message = this.txMessage!;
      const socket = this.socket;
      this.expect(this.onMessageReply, 'DATA');
      this.txMessageStarted = true;
      socket.cork();
      socket.write(message);
      // "After the data" once the final dot has left this process: until then the server cannot
      // hold the message, and a silence means it stopped reading.
      socket.write(endsWithCrlf(message) ? DOT_CRLF : CRLF_DOT_CRLF, this.onMessageWritten);
      socket.uncork();
      this.replyTimer.refresh();
      return;
    }
    this.txError ??= new SmtpError('Data command failed', 'EENVELOPE', 'DATA', { code, text });
    this.finish();
  }

  private messageReplied(code: number, text: string): void {
    if (code >= 200 && code < 300) {
      this.txMessage = undefined;
      this.settle();
      this.txResolve!({ code, text, rejected: this.txRejected });
      return;
    }
    this.txError = new SmtpError('Message failed', 'EMESSAGE', 'DATA', { code, text });
    this.finish();
  }

  /** Ends the transaction with its error (there is one whenever this is reached). */
  private finish(): void {
    const error = this.txError ?? new SmtpError('the transaction ended without an answer', 'EPROTOCOL', 'DATA');
    error.messageStarted = this.txMessageStarted;
    this.txMessage = undefined;
    this.settle();
    this.txReject!(error);
  }

  private settle(): void {
    this.busy = false;
  }

  // ---- replies ----------------------------------------------------------------------------------

  private expect(handler: ReplyHandler, command: string): void {
    this.handlers.push(handler);
    this.handlerCommands.push(command);
  }

  private write(text: string): void {
    this.replyTimer.refresh();
    this.socket.write(text, 'utf8');
  }

  private received(buffer: Buffer, end: number): void {
    if (this.handlers.length > this.handlerHead) this.replyTimer.refresh();
    let start = 0;
    while (start < end) {
      let newline = buffer.indexOf(10, start);
      if (newline === -1 || newline >= end) {
        this.partialLine += buffer.toString('utf8', start, end);
        if (this.partialLine.length > MAX_REPLY_CHARS) this.destroy(new SmtpError('the server reply is too long', 'EPROTOCOL', this.pendingCommand() ?? 'CONN'));
        return;
      }
      const lineEnd = newline > start && buffer[newline - 1] === 13 ? newline - 1 : newline;
      let line = buffer.toString('utf8', start, lineEnd);
      start = newline + 1;
      if (this.partialLine !== '') {
        line = this.partialLine + line;
        if (line.endsWith('\r')) line = line.slice(0, -1);
        this.partialLine = '';
      }
      newline = line.charCodeAt(3);
      if (newline === 0x2d /* '-' */) {
        this.replyText += `${line}\n`;
        if (this.replyText.length > MAX_REPLY_CHARS) {
          this.destroy(new SmtpError('the server reply is too long', 'EPROTOCOL', this.pendingCommand() ?? 'CONN'));
          return;
        }
        continue;
      }
      if (line === '' && this.replyText === '') continue;
      const text = this.replyText === '' ? line : this.replyText + line;
      this.replyText = '';
      const code = replyCode(line);
      if (code === 0) {
        this.destroy(new SmtpError('the server sent something that is not an SMTP reply', 'EPROTOCOL', this.pendingCommand() ?? 'CONN', { code: 0, text }));
        return;
      }
      this.dispatch(code, text);
      if (this.endError) return;
    }
  }

  private dispatch(code: number, text: string): void {
    const handler = this.handlers[this.handlerHead];
    if (handler === undefined) {
      // Nothing was asked: the server is ending the session (an idle timeout's 421).
      this.unsolicited = { code, text };
      return;
    }
    this.handlers[this.handlerHead] = undefined as unknown as ReplyHandler;
    this.handlerHead++;
    if (this.handlerHead === this.handlers.length) {
      this.handlers.length = 0;
      this.handlerCommands.length = 0;
      this.handlerHead = 0;
    }
    handler(code, text);
  }

  private pendingCommand(): string | undefined {
    return this.handlers.length > this.handlerHead ? this.handlerCommands[this.handlerHead] : undefined;
  }

  private onReplyTimeout(): void {
    const command = this.pendingCommand();
    // Nothing awaited (an idle connection), or the greeting, which has its own timer.
    if (command === undefined || this.awaitingGreeting || this.closed) return;
    const error = new SmtpError(`Timeout: no answer to ${command} within ${this.options.socketTimeoutMs} ms`, 'ETIMEDOUT', command);
    error.timeoutType = 'SOCKET_TIMEOUT';
    this.destroy(error);
  }

  private socketError(error: NodeJS.ErrnoException): SmtpError {
    const e = new SmtpError(error.message, 'ECONNECTION', this.pendingCommand() ?? 'CONN');
    (e as SmtpError & { originalCode?: string }).originalCode = error.code;
    return e;
  }

  /** The error for a command on a connection the server already ended (its 421) or that is gone. */
  private goneError(command: string): SmtpError {
    if (this.unsolicited) return new SmtpError('the server ended the session', 'ECONNECTION', command, this.unsolicited);
    return new SmtpError(this.endError?.message ?? 'the connection is closed', 'ECONNECTION', command);
  }

  /** Ends the connection with `error` as the reason: fails what is in flight, once. */
  private destroy(error: SmtpError): void {
    if (this.endError) return;
    this.endError = error;
    this.closed = true;
    clearTimeout(this.replyTimer);
    this.socket?.destroy();
    this.handlers.length = 0;
    this.handlerCommands.length = 0;
    this.handlerHead = 0;
    if (this.setupFailure) {
      const fail = this.setupFailure;
      this.setupFailure = undefined;
      fail(error);
    }
    if (this.busy) {
      // A reply already refused the transaction (a 421 before the server hung up): that is the
      // answer. Otherwise the connection failed under it.
      if (this.txError === undefined) {
        this.txError = this.unsolicited ? new SmtpError('the server ended the session', 'ECONNECTION', error.command, this.unsolicited) : error;
        if (error.code === 'ETIMEDOUT' && this.txAfterData) this.txError.afterData = true;
      }
      this.finish();
    }
    this.onClose?.();
  }
}

/**
 * Whether the message can go on the wire as it is: every line break is CRLF and no line starts
 * with '.' (what the renderer writes). One indexOf per line, so that such a message is not
 * copied again.
 */
export function goesOutAsIs(message: Buffer): boolean {
  if (message[0] === 0x2e) return false;
  let lineFeeds = 0;
  for (let i = message.indexOf(10); i !== -1; i = message.indexOf(10, i + 1)) {
    if (i === 0 || message[i - 1] !== 13 || message[i + 1] === 0x2e) return false;
    lineFeeds++;
  }
  // As many CRs as LFs, each before its LF: no bare CR.
  let carriageReturns = 0;
  for (let i = message.indexOf(13); i !== -1; i = message.indexOf(13, i + 1)) if (++carriageReturns > lineFeeds) return false;
  return true;
}

const endsWithCrlf = (message: Buffer) => message.length >= 2 && message[message.length - 2] === 13 && message[message.length - 1] === 10;

/**
 * A message as SMTP carries it: every line break (CRLF, LF or CR) made CRLF, and a '.' doubled
 * at the start of a line (RFC 5321 4.5.2). The renderer's output needs neither.
 */
export function prepareMessage(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(message.length * 2 + 2);
  let o = 0;
  let lineStart = true;
  for (let i = 0; i < message.length; i++) {
    const byte = message[i]!;
    if (byte === 13 || byte === 10) {
      if (byte === 13 && message[i + 1] === 10) i++;
      out[o++] = 13;
      out[o++] = 10;
      lineStart = true;
      continue;
    }
    if (lineStart && byte === 0x2e) out[o++] = 0x2e;
    out[o++] = byte;
    lineStart = false;
  }
  return out.subarray(0, o);
}

function invalidEnvelope(from: string, to: readonly string[]): string | undefined {
  if (to.length === 0) return 'No recipients defined';
  if (/[\r\n<>]/.test(from)) return `Invalid sender ${JSON.stringify(from)}`;
  for (const recipient of to) if (recipient === '' || /[\r\n<>]/.test(recipient)) return `Invalid recipient ${JSON.stringify(recipient)}`;
  return undefined;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is the point
const isAscii = (text: string) => /^[\u0000-\u007f]*$/.test(text);

function replyCode(line: string): number {
  const a = line.charCodeAt(0) - 48;
  const b = line.charCodeAt(1) - 48;
  const c = line.charCodeAt(2) - 48;
  if (a < 1 || a > 5 || b < 0 || b > 9 || c < 0 || c > 9) return 0;
  return a * 100 + b * 10 + c;
}

/** An EHLO keyword on a line of its own (after "250-" or "250 "). */
function hasExtension(ehlo: string, keyword: string): boolean {
  return new RegExp(`^\\d{3}[ -]${keyword}(?:[ =]|$)`, 'im').test(ehlo);
}

/** The SASL mechanisms an EHLO reply offers, upper-cased. */
function authMechanisms(ehlo: string): string[] {
  const mechanisms: string[] = [];
  for (const line of ehlo.split('\n')) {
    const match = /^\d{3}[ -]AUTH[ =](.*)$/i.exec(line.trim());
    if (match) for (const mechanism of match[1]!.split(/[\s=]+/)) if (mechanism) mechanisms.push(mechanism.toUpperCase());
  }
  return mechanisms;
}

/** The host name when it is a FQDN, an IP address in brackets, else [127.0.0.1] (what nodemailer sends). */
function defaultClientName(): string {
  let name = '';
  try {
    name = os.hostname();
  } catch {
    name = '';
  }
  if (!name.includes('.')) return '[127.0.0.1]';
  return net.isIP(name) ? `[${name}]` : name;
}
