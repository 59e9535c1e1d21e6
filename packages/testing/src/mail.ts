// SMTP servers for tests, on loopback: the capture sink (what Herald sends to in most tests) and a
// plain smtp-server for what the sink does not do (AUTH, a short idle timeout, refusing MAIL FROM
// on a stale session); and reading what they received.
import { readFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { type CaptureSink, type CaptureSinkOptions, startCaptureSink } from '@herald/capture-sink';
import { tempDir } from '@herald/testing-base';
import { SMTPServer } from 'smtp-server';

export type { CaptureSink, SinkRule } from '@herald/capture-sink';

/**
 * A capture sink for a test. `files: true` keeps each message as an .eml file in a new temp dir
 * (for reading the message: links, headers, DKIM); without it only the index is kept.
 */
export function startTestSink(options: Omit<CaptureSinkOptions, 'dir' | 'store'> & { files?: boolean } = {}): Promise<CaptureSink> {
  const { files, ...rest } = options;
  return startCaptureSink({ ...rest, ...(files ? { dir: tempDir('mail') } : { store: 'memory' }) });
}

export interface SmtpServerOptions {
  /** Require AUTH (PLAIN, LOGIN) with these credentials, answering 535 otherwise; without, AUTH is not offered. */
  credentials?: { user: string; password: string };
  /** Ends a session idle this long ("421 Timeout", smtp-server's socketTimeout); its default otherwise. */
  idleTimeoutMs?: number;
  /**
   * Asked at each MAIL FROM with how long the session had been idle (since it connected or its
   * last message): an Error with a `responseCode` refuses the command (a 421 also ends the session).
   */
  onMailFrom?: (idleMs: number) => Error | undefined;
}

export interface AcceptedMessage {
  /** The first envelope recipient. */
  to: string;
  /** The user the session logged in as, if it did. */
  user?: string;
  at: number;
}

export interface TestSmtpServer {
  /** smtp://127.0.0.1:<port> */
  url: string;
  port: number;
  /** The URL with credentials, as SMTP_URL takes them. */
  urlWith(user: string, password: string): string;
  /** Messages accepted, in order. */
  accepted: AcceptedMessage[];
  /** When the last message was accepted (0 before any). */
  lastAcceptedAt: number;
  /** Connections open now, and opened in all. */
  open: number;
  opened: number;
  /** Closes the server, cutting the connections its clients keep open. */
  close(): Promise<void>;
}

/** A real smtp-server on loopback that accepts every message (see SmtpServerOptions). */
export async function startSmtpServer(options: SmtpServerOptions = {}): Promise<TestSmtpServer> {
  const state = { accepted: [] as AcceptedMessage[], lastAcceptedAt: 0, open: 0, opened: 0 };
  const lastActive = new Map<string, number>();
  const sockets = new Set<Socket>();
  const { credentials } = options;
  const server = new SMTPServer({
    logger: false,
    disabledCommands: credentials ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
    ...(credentials
      ? {
          authOptional: false,
          allowInsecureAuth: true,
          onAuth: (auth, _session, callback) =>
            auth.username === credentials.user && auth.password === credentials.password
              ? callback(null, { user: auth.username })
              : callback(new Error('5.7.8 Authentication failed')),
        }
      : {}),
    ...(options.idleTimeoutMs !== undefined ? { socketTimeout: options.idleTimeoutMs } : {}),
    onConnect: (session, callback) => {
      lastActive.set(session.id, Date.now());
      callback();
    },
    onClose: (session) => {
      lastActive.delete(session.id);
    },
    onMailFrom: (_address, session, callback) => callback(options.onMailFrom?.(Date.now() - (lastActive.get(session.id) ?? 0)) ?? undefined),
    onData: (stream, session, callback) => {
      stream.resume();
      stream.on('end', () => {
        const now = Date.now();
        state.accepted.push({ to: session.envelope.rcptTo[0]!.address, user: session.user === undefined ? undefined : String(session.user), at: now });
        state.lastAcceptedAt = now;
        lastActive.set(session.id, now);
        callback();
      });
    },
  });
  // A client cut off mid-command is routine here (a pool closed, a socket destroyed).
  server.on('error', () => undefined);
  server.server.on('connection', (socket: Socket) => {
    state.open++;
    state.opened++;
    sockets.add(socket);
    socket.once('close', () => {
      state.open--;
      sockets.delete(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return Object.assign(state, {
    url: `smtp://127.0.0.1:${port}`,
    port,
    urlWith: (user: string, password: string) => `smtp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}`,
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // smtp-server waits for its clients to leave; pools under test keep theirs open.
      for (const socket of sockets) socket.destroy();
      return closed;
    },
  });
}

/** A captured message's text with quoted-printable undone (soft breaks joined, =XX decoded byte by byte): for finding URLs in it. */
export function readMessageText(file: string): string {
  return readFileSync(file, 'utf8')
    .replace(/=\r?\n/g, '')
    .replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

/** The open pixel, the first click link and the List-Unsubscribe link of a captured message (.eml file). */
export function messageLinks(file: string): { pixel: string; click: string; unsubscribe: string } {
  const text = readMessageText(file);
  const find = (pattern: RegExp, what: string) => {
    const match = pattern.exec(text);
    if (!match) throw new Error(`no ${what} in ${file}`);
    return match[1]!;
  };
  return {
    pixel: find(/(https?:\/\/[^\s"<>]+\/t\/o\/[\w.-]+)/, 'open pixel'),
    click: find(/(https?:\/\/[^\s"<>]+\/t\/c\/[\w.-]+)/, 'click link'),
    unsubscribe: find(/^List-Unsubscribe:.*<(https?:\/\/[^>]+\/u\/[\w.-]+)>/m, 'List-Unsubscribe link'),
  };
}

/** Fetches a tracking link as a person's browser would (not a known machine), without following a redirect. */
export const hit = (url: string) => fetch(url, { redirect: 'manual', headers: { 'user-agent': 'Mozilla/5.0' } });
