// A worker thread's SMTP connections: at most `connections` of Herald's own SmtpConnection
// (@herald/channels: PIPELINING, the message written as one prepared buffer), each opened on
// first use and kept while it is used, one message at a time per connection.
// SMTP_URL is read by nodemailer's parseConnectionUrl, as before: smtp:// or smtps://, user and
// password, and the query options the client knows (requireTLS, ignoreTLS, opportunisticTLS,
// name, localAddress, authMethod, tls.*).
// Idle connections: servers end sessions idle for about a minute (smtp-server, Postfix) with
// "421 Timeout", so a connection idle for `idleTimeoutMs` is closed here first (QUIT). When the
// server's timer wins anyway (its 421 crosses the next command), a reused connection that fails
// before the message went out sends it again at once on a new connection.
// After a refused envelope or message the session is reset (RSET) and the connection kept.
import { DkimSigner, type SmtpClientOptions, SmtpConnection, type SmtpError } from '@herald/channels';
import { parseConnectionUrl } from 'nodemailer/lib/shared';

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

export type { SmtpError } from '@herald/channels';

interface Lane {
  connection: SmtpConnection | null;
  /** Closes the connection once it has been idle for idleTimeoutMs. */
  idleTimer?: NodeJS.Timeout;
}

export class SmtpPool {
  private readonly idle: Lane[];
  private readonly waiting: ((lane: Lane) => void)[] = [];
  private readonly clientOptions: SmtpClientOptions;
  private readonly dkim: DkimSigner | undefined;
  /** Why the DKIM key could not be used: every message fails with it rather than going out unsigned. */
  private readonly dkimError: Error | undefined;
  private readonly idleTimeoutMs: number;

  constructor(options: SmtpPoolOptions) {
    this.clientOptions = clientOptionsOf(options.url, options.timeoutMs);
    try {
      this.dkim = options.dkim ? new DkimSigner(options.dkim) : undefined;
    } catch (error) {
      this.dkimError = Object.assign(new Error(`the DKIM private key cannot be used: ${(error as Error).message}`), { code: 'EDKIM', command: 'DKIM' });
    }
    this.idleTimeoutMs = options.idleTimeoutMs;
    this.idle = Array.from({ length: options.connections }, () => ({ connection: null }));
  }

  /** Sends one message; resolves with the server's answer to the data, rejects with an SmtpError. */
  async send(envelope: SmtpEnvelope, raw: Buffer): Promise<{ response: string }> {
    if (this.dkimError) throw this.dkimError;
    const message = this.dkim ? this.dkim.sign(raw) : raw;
    const lane = await this.acquire();
    try {
      return await this.sendOn(lane, envelope, message, true);
    } finally {
      this.release(lane);
    }
  }

  private async sendOn(lane: Lane, envelope: SmtpEnvelope, message: Buffer, mayRetry: boolean): Promise<{ response: string }> {
    const reused = lane.connection !== null;
    const connection = lane.connection ?? (await this.open(lane));
    try {
      const reply = await connection.send(envelope.from, envelope.to, message);
      return { response: reply.text };
    } catch (error) {
      const e = error as SmtpError;
      if (reused && mayRetry && serverEndedSession(e)) {
        // The server ended the session this connection had kept (its idle timeout crossed this
        // message): the message was not taken, so it goes out at once on a new connection.
        this.drop(lane, connection);
        return this.sendOn(lane, envelope, message, false);
      }
      if ((e.code === 'EENVELOPE' || e.code === 'EMESSAGE') && e.command !== 'API' && e.responseCode !== 421 && lane.connection === connection) {
        // The server refused this message, not the session: reset it and keep the connection
        // (an RSET not answered in time drops the connection).
        await connection.reset().catch(() => this.drop(lane, connection));
      } else if (e.command !== 'API') {
        this.drop(lane, connection);
      }
      throw error;
    }
  }

  private async open(lane: Lane): Promise<SmtpConnection> {
    const connection = await SmtpConnection.open(this.clientOptions);
    // A connection that ends (the server closed it, a timeout) is forgotten: the next message opens another.
    connection.onClose = () => this.forget(lane, connection);
    lane.connection = connection;
    return connection;
  }

  private forget(lane: Lane, connection: SmtpConnection): void {
    if (lane.connection === connection) lane.connection = null;
  }

  private drop(lane: Lane, connection: SmtpConnection): void {
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
const serverEndedSession = (e: SmtpError) => e.responseCode === 421 || (!e.messageStarted && (e.code === 'ECONNECTION' || e.code === 'ETIMEDOUT'));

/** SMTP_URL as the client's options (nodemailer's URL syntax; options the client does not know are ignored, as nodemailer ignored them). */
export function clientOptionsOf(url: string, timeoutMs: number): SmtpClientOptions {
  const parsed = parseConnectionUrl(url) as ReturnType<typeof parseConnectionUrl> & { auth?: { user?: string; pass?: string } };
  const options: SmtpClientOptions = { connectionTimeoutMs: timeoutMs, greetingTimeoutMs: timeoutMs, socketTimeoutMs: timeoutMs };
  if (parsed.host !== undefined) options.host = parsed.host;
  if (parsed.port !== undefined) options.port = parsed.port;
  if (parsed.secure !== undefined) options.secure = parsed.secure;
  if (parsed.requireTLS !== undefined) options.requireTLS = Boolean(parsed.requireTLS);
  if (parsed.ignoreTLS !== undefined) options.ignoreTLS = Boolean(parsed.ignoreTLS);
  if (parsed.opportunisticTLS !== undefined) options.opportunisticTLS = Boolean(parsed.opportunisticTLS);
  if (parsed.tls !== undefined) options.tls = parsed.tls;
  if (parsed.name !== undefined) options.name = String(parsed.name);
  if (parsed.localAddress) options.localAddress = String(parsed.localAddress);
  if (parsed.auth?.user) {
    options.auth = { user: parsed.auth.user, pass: parsed.auth.pass ?? '' };
    if (parsed.authMethod !== undefined) options.auth.method = String(parsed.authMethod);
  }
  return options;
}
