// A worker thread's SMTP connections: raw MIME sent over nodemailer's SMTPConnection, one
// message at a time per connection, at most `connections` connections, each opened on first use
// and kept while it is used. Not nodemailer's pooled transport: for every message it wraps the raw
// MIME in a MimeNode, generates ids with randomBytes and runs a stream pipeline, which measured
// 289 µs of CPU per message against 118 µs here (the same 6 KB messages to smtp-sink on this
// machine).
// Idle connections: servers end sessions idle for about a minute (smtp-server, Postfix) with
// "421 Timeout", so a connection idle for `idleTimeoutMs` is closed here first (QUIT). When the
// server's timer wins anyway (its 421 crosses the next command), a reused connection that fails
// before the message was accepted sends it again at once on a new connection.
// After a refused envelope or message the session is reset (RSET) and the connection kept.
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import DKIM from 'nodemailer/lib/dkim';
import { parseConnectionUrl } from 'nodemailer/lib/shared';
import SMTPConnection from 'nodemailer/lib/smtp-connection';

export interface SmtpPoolOptions {
  url: string;
  connections: number;
  /** Connection, greeting and socket timeout. */
  timeoutMs: number;
  /** A connection unused this long is closed (before the server's own idle timeout ends it). */
  idleTimeoutMs: number;
  dkim?: { domainName: string; keySelector: string; privateKey: string };
}

export interface SmtpEnvelope {
  from: string;
  to: string[];
}

/** What SMTPConnection rejects with: the reply code and the command it answered, when there was one. */
export interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
  command?: string;
  response?: string;
  timeoutType?: string;
}

interface Lane {
  connection: SMTPConnection | null;
  /** Closes the connection once it has been idle for idleTimeoutMs. */
  idleTimer?: NodeJS.Timeout;
}

export class SmtpPool {
  private readonly idle: Lane[];
  private readonly waiting: ((lane: Lane) => void)[] = [];
  private readonly connectionOptions: SMTPConnection.Options;
  private readonly auth: SMTPConnection.Credentials | undefined;
  private readonly dkim: DKIM | undefined;
  private readonly timeoutMs: number;
  private readonly idleTimeoutMs: number;

  constructor(options: SmtpPoolOptions) {
    const { auth, ...parsed } = parseConnectionUrl(options.url) as SMTPConnection.Options & { auth?: SMTPConnection.Credentials };
    this.auth = auth?.user ? auth : undefined;
    this.connectionOptions = {
      ...parsed,
      connectionTimeout: options.timeoutMs,
      greetingTimeout: options.timeoutMs,
      socketTimeout: options.timeoutMs,
    };
    this.dkim = options.dkim ? new DKIM(options.dkim) : undefined;
    this.timeoutMs = options.timeoutMs;
    this.idleTimeoutMs = options.idleTimeoutMs;
    this.idle = Array.from({ length: options.connections }, () => ({ connection: null }));
  }

  /** Sends one message; resolves with the server's answer to the data, rejects with an SmtpError. */
  async send(envelope: SmtpEnvelope, raw: Buffer): Promise<{ response: string }> {
    const lane = await this.acquire();
    try {
      return await this.sendOn(lane, envelope, raw, true);
    } finally {
      this.release(lane);
    }
  }

  private async sendOn(lane: Lane, envelope: SmtpEnvelope, raw: Buffer, mayRetry: boolean): Promise<{ response: string }> {
    const reused = lane.connection !== null;
    const connection = lane.connection ?? (await this.open(lane));
    // A stream, so that a failure can tell whether any byte of the message went out.
    const message = this.dkim ? this.dkim.sign(raw) : Readable.from([raw]);
    try {
      const info = await new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) => {
        // NOTE: a copy each time: SMTPConnection keeps its state on the envelope it is given
        // (the MAIL FROM error among it), and a retry with the same object failed with the
        // first connection's 421 although the new connection accepted the command.
        connection.send({ from: envelope.from, to: [...envelope.to] }, message, (error, result) => (error ? reject(error) : resolve(result)));
      });
      return { response: info.response };
    } catch (error) {
      const e = error as SmtpError;
      if (reused && mayRetry && serverEndedSession(e, message.readableDidRead)) {
        // The server ended the session this connection had kept (its idle timeout crossed this
        // message): the message was not taken, so it goes out at once on a new connection.
        this.drop(lane, connection);
        return this.sendOn(lane, envelope, raw, false);
      }
      if ((e.code === 'EENVELOPE' || e.code === 'EMESSAGE') && e.responseCode !== 421 && lane.connection === connection) {
        // The server refused this message, not the session: reset it and keep the connection
        // (a connection that dies meanwhile never answers the RSET: the timeout drops it).
        const reset = await Promise.race([
          new Promise<boolean>((resolve) => connection.reset((resetError) => resolve(!resetError))),
          sleep(this.timeoutMs, false),
        ]);
        if (!reset) this.drop(lane, connection);
      } else {
        this.drop(lane, connection);
      }
      throw error;
    }
  }

  private async open(lane: Lane): Promise<SMTPConnection> {
    const connection = new SMTPConnection(this.connectionOptions);
    // Errors of a send reach its callback; these listeners only forget a connection that died.
    connection.on('error', () => this.forget(lane, connection));
    connection.once('end', () => this.forget(lane, connection));
    try {
      await settled(connection, (done) => connection.connect(done));
      const auth = this.auth;
      if (auth) await settled(connection, (done) => connection.login(auth, done));
    } catch (error) {
      connection.close();
      throw error;
    }
    lane.connection = connection;
    return connection;
  }

  private forget(lane: Lane, connection: SMTPConnection): void {
    if (lane.connection === connection) lane.connection = null;
  }

  private drop(lane: Lane, connection: SMTPConnection): void {
    this.forget(lane, connection);
    connection.close();
  }

  private acquire(): Promise<Lane> {
    const lane = this.idle.pop();
    if (lane) {
      clearTimeout(lane.idleTimer);
      return Promise.resolve(lane);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(lane: Lane): void {
    const next = this.waiting.shift();
    if (next) {
      next(lane);
      return;
    }
    this.idle.push(lane);
    const connection = lane.connection;
    if (!connection) return;
    lane.idleTimer = setTimeout(() => {
      // Forgotten first: the next message opens a new connection without waiting for the 221.
      this.forget(lane, connection);
      connection.quit();
    }, this.idleTimeoutMs);
    lane.idleTimer.unref();
  }
}

/**
 * The server ended the session rather than refused the message: a 421 (whatever the command),
 * or the connection failed before a byte of the message went out. A connection that fails after
 * the data may have delivered it: that is not retried here (it is in doubt).
 */
const serverEndedSession = (e: SmtpError, messageStarted: boolean) =>
  e.responseCode === 421 || (!messageStarted && (e.code === 'ECONNECTION' || e.code === 'ESOCKET' || e.code === 'ETIMEDOUT'));

/**
 * Runs a connect or a login. SMTPConnection reports some of their failures only as an 'error'
 * event (a refused connection, a timeout), never through the callback: both end the wait.
 */
function settled(connection: SMTPConnection, call: (done: (error?: Error | null) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => finish(error);
    const onEnd = () => finish(Object.assign(new Error('the SMTP server closed the connection'), { code: 'ECONNECTION', command: 'CONN' }));
    const finish = (error?: Error | null) => {
      connection.off('error', onError);
      connection.off('end', onEnd);
      if (error) reject(error);
      else resolve();
    };
    connection.once('error', onError);
    connection.once('end', onEnd);
    call(finish);
  });
}
