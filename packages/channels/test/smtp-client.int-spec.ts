// The SMTP client against real servers on loopback: smtp-server (with and without PIPELINING,
// AUTH, STARTTLS, implicit TLS, refusals decided per address) and Postfix's smtp-sink (4xx and
// 5xx at each command, connections dropped mid-conversation). What the send engine classifies
// on is asserted for each failure: the code, the reply code, the command it answered, whether
// the message had started to go out and whether it was all out when the server fell silent.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { eventually, freePort } from '@herald/testing-base';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { type SmtpClientOptions, SmtpConnection, type SmtpError } from '../src/smtp-client.js';

interface Received {
  from: string;
  to: string[];
  data: Buffer;
  secure: boolean;
  user: string | undefined;
}

interface TestServer {
  port: number;
  received: Received[];
  close(): Promise<void>;
}

const refusal = (code: number) => Object.assign(new Error(`refused ${code}`), { responseCode: code });

/** The reply code a test address asks for: "r451@x" refuses its RCPT TO with 451, "d552@x" its data with 552, "m550@x" as sender its MAIL FROM. */
const askedCode = (address: string, prefix: string) => {
  const match = new RegExp(`^${prefix}(\\d{3})@`).exec(address);
  return match ? Number(match[1]) : undefined;
};

/** smtp-server on loopback; refuses what the addresses ask for; `silent` never answers MAIL FROM or the data. */
async function startServer(options: Partial<SMTPServerOptions> & { silent?: 'mail' | 'data' } = {}): Promise<TestServer> {
  const { silent, ...serverOptions } = options;
  const received: Received[] = [];
  const server = new SMTPServer({
    logger: false,
    disabledCommands: ['STARTTLS', 'AUTH'],
    onMailFrom: (address, _session, callback) => {
      if (silent === 'mail') return;
      const code = askedCode(address.address, 'm');
      callback(code ? refusal(code) : undefined);
    },
    onRcptTo: (address, _session, callback) => {
      const code = askedCode(address.address, 'r');
      callback(code ? refusal(code) : undefined);
    },
    onData: (stream, session, callback) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        if (silent === 'data') return;
        const to = session.envelope.rcptTo.map((r) => r.address);
        const code = to.map((address) => askedCode(address, 'd')).find((c) => c !== undefined);
        if (code) return callback(refusal(code));
        const from = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address;
        received.push({ from, to, data: Buffer.concat(chunks), secure: session.secure, user: session.user === undefined ? undefined : String(session.user) });
        callback();
      });
    },
    ...serverOptions,
  });
  server.on('error', () => undefined);
  const sockets = new Set<net.Socket>();
  server.server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.server.address() as net.AddressInfo).port,
    received,
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      return closed;
    },
  };
}

const SMTP_SINK = ['/usr/sbin/smtp-sink', '/usr/bin/smtp-sink', '/usr/local/sbin/smtp-sink'].find((path) => existsSync(path));

/** Postfix's smtp-sink on loopback with `flags` (-p: no PIPELINING; -r/-f: 4xx/5xx to commands; -q: hang up after them). */
async function startSink(flags: string[]): Promise<TestServer> {
  if (!SMTP_SINK) throw new Error('smtp-sink is not installed: run infra/postfix/install.sh');
  const port = await freePort();
  const privileges = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const child = spawn(SMTP_SINK, [...privileges, ...flags, `127.0.0.1:${port}`, '10'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await eventually(
    () =>
      new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('data', (chunk) => {
          socket.destroy();
          resolve(chunk.toString().startsWith('220'));
        });
        socket.once('error', () => resolve(false));
      }),
    { timeoutMs: 10_000, what: 'smtp-sink greeting' },
  );
  return {
    port,
    received: [],
    close: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

const clientOptions = (port: number, extra: Partial<SmtpClientOptions> = {}): SmtpClientOptions => ({
  host: '127.0.0.1',
  port,
  connectionTimeoutMs: 5000,
  greetingTimeoutMs: 5000,
  socketTimeoutMs: 5000,
  ...extra,
});

const message = Buffer.from('From: a@shop.example\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n.a line with a leading dot\r\n.\r\nend\r\n');

/** The error a promise rejects with (fails the test when it resolves). */
async function failure(promise: Promise<unknown>): Promise<SmtpError> {
  try {
    await promise;
  } catch (error) {
    return error as SmtpError;
  }
  throw new Error('expected a failure, the promise resolved');
}

let server: TestServer | undefined;
let connection: SmtpConnection | undefined;
afterEach(async () => {
  connection?.close();
  connection = undefined;
  await server?.close();
  server = undefined;
});

describe.each([
  ['with PIPELINING', false],
  ['without PIPELINING', true],
])('SmtpConnection and smtp-server %s', (_mode, hidePIPELINING) => {
  it('sends messages on one connection, dots and line ends intact', async () => {
    server = await startServer({ hidePIPELINING });
    connection = await SmtpConnection.open(clientOptions(server.port));
    expect(connection.pipelining).toBe(!hidePIPELINING);
    const lfMessage = Buffer.from(message.toString().replace(/\r\n/g, '\n'));
    for (const [to, body] of [
      ['one@example.com', message],
      ['two@example.com', lfMessage],
    ] as const) {
      await expect(connection.send('a@shop.example', [to], body)).resolves.toMatchObject({ code: 250, rejected: [] });
    }
    expect(server.received.map((r) => [r.from, r.to, r.data.toString()])).toEqual([
      ['a@shop.example', ['one@example.com'], message.toString()],
      ['a@shop.example', ['two@example.com'], message.toString()],
    ]);
  });

  it.each([
    ['MAIL FROM', 451, 'm451@shop.example', 'ok@example.com', 'EENVELOPE'],
    ['MAIL FROM', 550, 'm550@shop.example', 'ok@example.com', 'EENVELOPE'],
    ['RCPT TO', 451, 'a@shop.example', 'r451@example.com', 'EENVELOPE'],
    ['RCPT TO', 550, 'a@shop.example', 'r550@example.com', 'EENVELOPE'],
    ['DATA', 452, 'a@shop.example', 'd452@example.com', 'EMESSAGE'],
    ['DATA', 552, 'a@shop.example', 'd552@example.com', 'EMESSAGE'],
  ])('reports a refusal at %s (%i), and the session carries the next message after RSET', async (command, code, from, to, errorCode) => {
    server = await startServer({ hidePIPELINING });
    connection = await SmtpConnection.open(clientOptions(server.port));
    const error = await failure(connection.send(from, [to], message));
    expect(error).toMatchObject({ code: errorCode, responseCode: code, command, afterData: false });
    expect(error.messageStarted).toBe(errorCode === 'EMESSAGE');
    await connection.reset();
    await expect(connection.send('a@shop.example', ['next@example.com'], message)).resolves.toMatchObject({ code: 250 });
    expect(server.received.map((r) => r.to)).toEqual([['next@example.com']]);
  });

  it('sends to the recipients accepted and lists the ones refused', async () => {
    server = await startServer({ hidePIPELINING });
    connection = await SmtpConnection.open(clientOptions(server.port));
    const result = await connection.send('a@shop.example', ['one@example.com', 'r550@example.com', 'two@example.com'], message);
    expect(result.rejected).toEqual([{ recipient: 'r550@example.com', reply: expect.objectContaining({ code: 550 }) }]);
    expect(server.received.map((r) => r.to)).toEqual([['one@example.com', 'two@example.com']]);
  });
});

describe('SmtpConnection and smtp-server: sessions', () => {
  it('marks a silence after the whole message as after the data (in doubt)', async () => {
    server = await startServer({ silent: 'data' });
    connection = await SmtpConnection.open(clientOptions(server.port, { socketTimeoutMs: 300 }));
    const error = await failure(connection.send('a@shop.example', ['b@example.com'], message));
    expect(error).toMatchObject({ code: 'ETIMEDOUT', command: 'DATA', timeoutType: 'SOCKET_TIMEOUT', messageStarted: true, afterData: true });
    expect(error.responseCode).toBeUndefined();
  });

  it('marks a silence at MAIL FROM as before the message', async () => {
    server = await startServer({ silent: 'mail' });
    connection = await SmtpConnection.open(clientOptions(server.port, { socketTimeoutMs: 300 }));
    const error = await failure(connection.send('a@shop.example', ['b@example.com'], message));
    expect(error).toMatchObject({ code: 'ETIMEDOUT', command: 'MAIL FROM', messageStarted: false, afterData: false });
  });

  it("reports the server's 421 on a session it ended while idle, before any byte of the message", async () => {
    server = await startServer({ socketTimeout: 300 });
    const idle = await SmtpConnection.open(clientOptions(server.port));
    connection = idle;
    await eventually(() => idle.closed, { timeoutMs: 5000, what: 'the server ending the idle session' });
    const error = await failure(idle.send('a@shop.example', ['b@example.com'], message));
    expect(error).toMatchObject({ code: 'ECONNECTION', responseCode: 421, command: 'MAIL FROM', messageStarted: false });
  });

  it.each(['PLAIN', 'LOGIN'])('logs in with AUTH %s, and reports a refused login as EAUTH', async (method) => {
    server = await startServer({
      disabledCommands: ['STARTTLS'],
      authMethods: ['PLAIN', 'LOGIN'],
      allowInsecureAuth: true,
      onAuth: (auth, _session, callback) => (auth.username === 'herald' && auth.password === 's3cret' ? callback(null, { user: 'herald' }) : callback(refusal(535))),
    });
    connection = await SmtpConnection.open(clientOptions(server.port, { auth: { user: 'herald', pass: 's3cret', method } }));
    await connection.send('a@shop.example', ['b@example.com'], message);
    expect(server.received[0]?.user).toBe('herald');
    const error = await failure(SmtpConnection.open(clientOptions(server.port, { auth: { user: 'herald', pass: 'wrong', method } })));
    expect(error).toMatchObject({ code: 'EAUTH', responseCode: 535, command: `AUTH ${method}` });
  });

  it('prefers AUTH PLAIN, then LOGIN, whatever order the server lists them in (as nodemailer does)', async () => {
    const methods: string[] = [];
    server = await startServer({
      disabledCommands: ['STARTTLS'],
      authMethods: ['LOGIN', 'PLAIN'],
      allowInsecureAuth: true,
      onAuth: (auth, _session, callback) => {
        methods.push(auth.method);
        callback(null, { user: auth.username });
      },
    });
    connection = await SmtpConnection.open(clientOptions(server.port, { auth: { user: 'herald', pass: 's3cret' } }));
    expect(methods).toEqual(['PLAIN']);
  });

  it('upgrades with STARTTLS when offered, and refuses a certificate it cannot verify', async () => {
    server = await startServer({ disabledCommands: ['AUTH'] });
    connection = await SmtpConnection.open(clientOptions(server.port, { tls: { rejectUnauthorized: false } }));
    await connection.send('a@shop.example', ['b@example.com'], message);
    expect(server.received[0]).toMatchObject({ secure: true, data: message });
    const error = await failure(SmtpConnection.open(clientOptions(server.port)));
    expect(error).toMatchObject({ code: 'ETLS', command: 'STARTTLS' });
  });

  it('speaks implicit TLS (smtps)', async () => {
    server = await startServer({ secure: true });
    connection = await SmtpConnection.open(clientOptions(server.port, { secure: true, tls: { rejectUnauthorized: false } }));
    await connection.send('a@shop.example', ['b@example.com'], message);
    expect(server.received[0]).toMatchObject({ secure: true });
  });

  it('reports a refused connection as ECONNECTION at CONN', async () => {
    const port = await freePort();
    const error = await failure(SmtpConnection.open(clientOptions(port)));
    expect(error).toMatchObject({ code: 'ECONNECTION', command: 'CONN' });
  });
});

/**
 * A scripted server: greets, answers EHLO with `extensions`, then records every chunk it reads
 * and answers nothing more (what came in before any reply shows what the client pipelined).
 */
async function startScriptedServer(extensions: string[]): Promise<{ port: number; chunks: string[]; close(): Promise<void> }> {
  const chunks: string[] = [];
  const sockets = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    sockets.add(socket);
    let greeted = false;
    socket.write('220 scripted ESMTP\r\n');
    socket.on('data', (chunk) => {
      if (!greeted) {
        greeted = true;
        const lines = ['scripted', ...extensions];
        socket.write(lines.map((line, i) => `250${i === lines.length - 1 ? ' ' : '-'}${line}\r\n`).join(''));
        return;
      }
      chunks.push(chunk.toString());
    });
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  return {
    port: (listener.address() as net.AddressInfo).port,
    chunks,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => listener.close(() => resolve()));
    },
  };
}

describe('SmtpConnection writes', () => {
  it('MAIL FROM, every RCPT TO and DATA in one write when the server offers PIPELINING, and MAIL FROM alone when it does not', async () => {
    for (const [extensions, expected] of [
      [['PIPELINING', '8BITMIME'], 'MAIL FROM:<a@shop.example>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n'],
      [['8BITMIME'], 'MAIL FROM:<a@shop.example>\r\n'],
    ] as const) {
      const scripted = await startScriptedServer([...extensions]);
      const silent = await SmtpConnection.open(clientOptions(scripted.port, { socketTimeoutMs: 300 }));
      const sent = failure(silent.send('a@shop.example', ['b@example.com', 'c@example.com'], message));
      await eventually(() => scripted.chunks.join('').endsWith('\r\n'), { timeoutMs: 5000, what: 'the first write' });
      expect(scripted.chunks).toEqual([expected]);
      await expect(sent).resolves.toMatchObject({ code: 'ETIMEDOUT', command: 'MAIL FROM', messageStarted: false });
      await scripted.close();
    }
  });
});

describe('SmtpConnection: in doubt only once the message is out', () => {
  it('does not count a message still waiting to be written as after the data when the server stops reading', async () => {
    // A server that answers DATA with 354, then reads nothing more: a message far larger than
    // the loopback socket buffers stays partly in the client when the timeout comes.
    const sockets = new Set<net.Socket>();
    const listener = net.createServer((socket) => {
      sockets.add(socket);
      socket.write('220 stalling ESMTP\r\n');
      let seen = '';
      socket.on('data', (chunk) => {
        seen += chunk.toString('latin1');
        if (seen.startsWith('EHLO')) {
          seen = '';
          socket.write('250-stalling\r\n250 PIPELINING\r\n');
        } else if (seen.includes('DATA\r\n')) {
          socket.write('250 sender ok\r\n250 recipient ok\r\n354 go ahead\r\n');
          socket.pause();
          socket.removeAllListeners('data');
        }
      });
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    try {
      const stalled = await SmtpConnection.open(clientOptions((listener.address() as net.AddressInfo).port, { socketTimeoutMs: 1000 }));
      connection = stalled;
      const line = `${'x'.repeat(998)}\r\n`;
      const huge = Buffer.from(`Subject: huge\r\n\r\n${line.repeat(64 * 1024)}`);
      const error = await failure(stalled.send('a@shop.example', ['b@example.com'], huge));
      expect(error).toMatchObject({ code: 'ETIMEDOUT', command: 'DATA', messageStarted: true, afterData: false });
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => listener.close(resolve));
    }
  });
});

describe.each([
  ['with PIPELINING', []],
  ['without PIPELINING', ['-p']],
])("SmtpConnection and Postfix's smtp-sink %s", (_mode, modeFlags) => {
  it('sends messages on one connection', async () => {
    server = await startSink([...modeFlags]);
    connection = await SmtpConnection.open(clientOptions(server.port));
    expect(connection.pipelining).toBe(modeFlags.length === 0);
    for (let i = 0; i < 3; i++) await expect(connection.send('a@shop.example', [`b${i}@example.com`], message)).resolves.toMatchObject({ code: 250 });
  });

  it.each([
    ['mail', 'MAIL FROM', 'EENVELOPE'],
    ['rcpt', 'RCPT TO', 'EENVELOPE'],
    ['data', 'DATA', 'EENVELOPE'],
    ['.', 'DATA', 'EMESSAGE'],
  ])('reports 4xx and 5xx to %s as refused at %s', async (sinkCommand, command, errorCode) => {
    for (const [flag, low] of [
      ['-r', 400],
      ['-f', 500],
    ] as const) {
      server = await startSink([...modeFlags, flag, sinkCommand]);
      connection = await SmtpConnection.open(clientOptions(server.port));
      const error = await failure(connection.send('a@shop.example', ['b@example.com'], message));
      expect(error).toMatchObject({ code: errorCode, command, messageStarted: sinkCommand === '.', afterData: false });
      expect(error.responseCode).toBeGreaterThanOrEqual(low);
      expect(error.responseCode).toBeLessThan(low + 100);
      await expect(connection.reset()).resolves.toBeUndefined();
      connection.close();
      await server.close();
      server = undefined;
    }
  });

  it('reports a connection dropped after RCPT TO as a connection failure before the message', async () => {
    server = await startSink([...modeFlags, '-q', 'rcpt']);
    connection = await SmtpConnection.open(clientOptions(server.port));
    const error = await failure(connection.send('a@shop.example', ['b@example.com'], message));
    expect(error).toMatchObject({ code: 'ECONNECTION', messageStarted: false, afterData: false });
    expect(['MAIL FROM', 'RCPT TO']).toContain(error.command);
    expect(error.responseCode).toBeUndefined();
    expect(connection.closed).toBe(true);
  });

  it('reports a connection dropped after the data as a connection failure once the message started', async () => {
    server = await startSink([...modeFlags, '-q', '.']);
    connection = await SmtpConnection.open(clientOptions(server.port));
    const error = await failure(connection.send('a@shop.example', ['b@example.com'], message));
    expect(error).toMatchObject({ code: 'ECONNECTION', command: 'DATA', messageStarted: true, afterData: false });
  });
});
