import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from '@herald/testing-base';
import nodemailer from 'nodemailer';
import { type CaptureSink, type CaptureSinkOptions, startCaptureSink } from './capture-sink.js';

/** The error a promise rejects with (fails the test if it resolves). */
async function failure(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    return error as Error & Record<string, unknown>;
  }
  throw new Error('expected a failure, the promise resolved');
}

/** A raw SMTP client: send lines, wait for a reply matching a pattern. */
function rawClient(port: number): Promise<{ socket: Socket; expect: (pattern: RegExp) => Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    let waiter: { pattern: RegExp; resolve: (text: string) => void } | null = null;
    const check = () => {
      if (waiter?.pattern.test(received)) {
        const { resolve: done } = waiter;
        waiter = null;
        const text = received;
        received = '';
        done(text);
      }
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
      check();
    });
    socket.on('error', () => {});
    socket.once('connect', () =>
      resolve({
        socket,
        expect: (pattern) =>
          new Promise((done) => {
            waiter = { pattern, resolve: done };
            check();
          }),
      }),
    );
    socket.once('error', reject);
  });
}

describe('capture sink over loopback SMTP', () => {
  const sinks: CaptureSink[] = [];
  const transports: { close(): void }[] = [];
  let work: string;

  const start = async (options: CaptureSinkOptions = {}): Promise<CaptureSink> => {
    const sink = await startCaptureSink(options);
    sinks.push(sink);
    return sink;
  };

  const transport = (sink: CaptureSink, extra: Record<string, unknown> = {}) => {
    const created = nodemailer.createTransport({
      host: '127.0.0.1',
      port: sink.port,
      secure: false,
      ignoreTLS: true,
      ...extra,
    });
    transports.push(created);
    return created;
  };

  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'capture-sink-'));
  });

  afterEach(async () => {
    for (const created of transports.splice(0)) created.close();
    await Promise.all(sinks.splice(0).map((sink) => sink.close()));
    await rm(work, { recursive: true, force: true });
  });

  it('captures a message with its Message-ID, envelope and exact bytes on disk', async () => {
    const dir = join(work, 'mail');
    const sink = await start({ dir });
    expect(sink.url).toBe(`smtp://127.0.0.1:${sink.port}`);
    const raw = [
      'From: Herald <sender@herald.test>',
      'To: a@example.test, b@example.test',
      'Subject: hello',
      'Message-ID:',
      ' <first.1@herald.test>',
      '',
      'line one',
      '.a line that starts with a dot',
      '',
    ].join('\r\n');

    const info = await transport(sink).sendMail({
      envelope: { from: 'sender@herald.test', to: ['a@example.test', 'b@example.test'] },
      raw,
    });

    expect(info.accepted).toEqual(['a@example.test', 'b@example.test']);
    expect(info.response).toMatch(/^250 OK: captured as #1/);
    const [message] = sink.messages();
    expect(sink.count()).toBe(1);
    expect(message).toMatchObject({
      seq: 1,
      messageId: '<first.1@herald.test>',
      from: 'sender@herald.test',
      to: ['a@example.test', 'b@example.test'],
      size: Buffer.byteLength(raw),
    });
    expect(new Date(message!.receivedAt).toISOString()).toBe(message!.receivedAt);
    // The transaction began (MAIL FROM) no later than the message was accepted.
    expect(new Date(message!.startedAt).toISOString()).toBe(message!.startedAt);
    expect(Date.parse(message!.startedAt)).toBeLessThanOrEqual(Date.parse(message!.receivedAt));
    expect(message!.file).toBe(join(dir, '00000001-first.1@herald.test.eml'));
    expect(await readFile(message!.file!, 'utf8')).toBe(raw);
  });

  it('reads the Message-ID nodemailer generates, and names a message without one no-id', async () => {
    const dir = join(work, 'mail');
    const sink = await start({ dir });
    const client = transport(sink);

    const info = await client.sendMail({ from: 's@herald.test', to: 'r@example.test', subject: 'x', text: 'hi' });
    await client.sendMail({
      envelope: { from: '', to: ['r@example.test'] },
      raw: 'Subject: no id\r\n\r\nbody\r\n',
    });

    const [first, second] = sink.messages();
    expect(first!.messageId).toBe(info.messageId);
    expect(second).toMatchObject({ seq: 2, messageId: null, from: '' });
    expect(await readdir(dir)).toContain('00000002-no-id.eml');
  });

  it("keeps nothing on disk with the 'memory' store", async () => {
    const dir = join(work, 'unused');
    const sink = await start({ dir, store: 'memory' });

    await transport(sink).sendMail({
      from: 's@herald.test',
      to: 'r@example.test',
      messageId: '<mem@herald.test>',
      text: 'x'.repeat(300_000),
    });

    expect(sink.messages()).toEqual([expect.objectContaining({ seq: 1, messageId: '<mem@herald.test>' })]);
    expect(sink.messages()[0]!.file).toBeUndefined();
    expect(sink.messages()[0]!.size).toBeGreaterThan(300_000);
    await expect(readdir(dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('continues numbering after the files of an earlier run', async () => {
    const dir = join(work, 'mail');
    const first = await start({ dir });
    await transport(first).sendMail({ from: 's@herald.test', to: 'r@example.test', text: '1' });
    await first.close();

    const second = await start({ dir });
    await transport(second).sendMail({ from: 's@herald.test', to: 'r@example.test', text: '2' });

    expect(second.messages().map((message) => message.seq)).toEqual([2]);
    expect(await readdir(dir)).toHaveLength(2);
  });

  it('refuses one recipient with a 550 rcpt rule while the other still gets the message', async () => {
    const sink = await start({ rules: [{ match: 'bounce@example.test', code: 550, message: 'No such user' }] });

    const info = await transport(sink).sendMail({
      from: 's@herald.test',
      to: ['Bounce@Example.test', 'ok@example.test'],
      text: 'hi',
    });

    expect(info.accepted).toEqual(['ok@example.test']);
    // nodemailer lower-cases the domain of an address (not the local part).
    expect(info.rejected).toEqual(['Bounce@example.test']);
    const [rejected] = info.rejectedErrors as unknown as (Error & Record<string, unknown>)[];
    expect(rejected).toMatchObject({
      code: 'EENVELOPE',
      command: 'RCPT TO',
      responseCode: 550,
      response: '550 No such user',
      recipient: 'Bounce@example.test',
    });
    expect(sink.messages()).toEqual([expect.objectContaining({ to: ['ok@example.test'] })]);
  });

  it('fails the whole send when every recipient is refused', async () => {
    const sink = await start({ rules: [{ match: '*@nowhere.test', code: 550 }] });

    const error = await failure(
      transport(sink).sendMail({ from: 's@herald.test', to: ['a@nowhere.test', 'b@nowhere.test'], text: 'hi' }),
    );

    expect(error).toMatchObject({ code: 'EENVELOPE', command: 'RCPT TO', responseCode: 550 });
    expect(error.rejected).toEqual(['a@nowhere.test', 'b@nowhere.test']);
    expect(sink.count()).toBe(0);
  });

  it('answers DATA with a 451 once (times: 1) and accepts the retry', async () => {
    const sink = await start({ rules: [{ match: 'grey@example.test', stage: 'data', code: 451, times: 1 }] });
    const client = transport(sink);
    const mail = { from: 's@herald.test', to: ['other@example.test', 'grey@example.test'], text: 'hi' };

    const error = await failure(client.sendMail(mail));
    expect(error).toMatchObject({ code: 'EMESSAGE', command: 'DATA', responseCode: 451 });
    expect(error.response).toMatch(/^451 Message for grey@example.test deferred by capture-sink rule/);
    expect(sink.count()).toBe(0);

    const info = await client.sendMail(mail);
    expect(info.accepted).toEqual(['other@example.test', 'grey@example.test']);
    expect(sink.messages()).toEqual([expect.objectContaining({ to: ['other@example.test', 'grey@example.test'] })]);
  });

  it('answers DATA for the first recipient that matches a data rule', async () => {
    const sink = await start({
      rules: [
        { match: 'second@example.test', stage: 'data', code: 554, message: 'second' },
        { match: 'first@example.test', stage: 'data', code: 452, message: 'first' },
      ],
    });

    const error = await failure(
      transport(sink).sendMail({ from: 's@herald.test', to: ['first@example.test', 'second@example.test'], text: 'x' }),
    );

    expect(error).toMatchObject({ responseCode: 452, response: '452 first' });
  });

  it("matches '*@domain' and '/regex/' rules case-insensitively", async () => {
    const sink = await start({
      rules: [
        { match: '*@Bounce.Test', code: 550 },
        { match: '/^soft-\\d+@/', code: 452 },
      ],
    });

    const info = await transport(sink).sendMail({
      from: 's@herald.test',
      to: ['USER@bounce.test', 'Soft-7@ok.test', 'soft-x@ok.test', 'user@sub.bounce.test'],
      text: 'hi',
    });

    expect(info.rejected).toEqual(['USER@bounce.test', 'Soft-7@ok.test']);
    expect((info.rejectedErrors ?? []).map((error) => (error as Error & { responseCode?: number }).responseCode)).toEqual([
      550, 452,
    ]);
    expect(info.accepted).toEqual(['soft-x@ok.test', 'user@sub.bounce.test']);
  });

  it('applies setRules to the next transaction', async () => {
    const sink = await start();
    const client = transport(sink);
    await client.sendMail({ from: 's@herald.test', to: 'r@example.test', text: '1' });

    sink.setRules([{ match: 'r@example.test', code: 550 }]);
    const error = await failure(client.sendMail({ from: 's@herald.test', to: 'r@example.test', text: '2' }));

    expect(error).toMatchObject({ responseCode: 550 });
    expect(() => sink.setRules([{ match: 'r@example.test', code: 250 }])).toThrow(/rules\[0\]\.code/);
  });

  it('picks up a rules file edited while running', async () => {
    const rulesFile = join(work, 'rules.json');
    await writeFile(rulesFile, '[]');
    const errors: Error[] = [];
    const sink = await start({ rulesFile, onRulesFileError: (error) => errors.push(error) });
    const client = transport(sink);
    const send = () => client.sendMail({ from: 's@herald.test', to: 'late@example.test', text: 'x' });
    await send();

    await writeFile(rulesFile, JSON.stringify([{ match: 'late@example.test', code: 554, message: 'edited' }]));
    let lastError: (Error & Record<string, unknown>) | undefined;
    await eventually(
      async () => {
        lastError = await send().then(
          () => undefined,
          (error: Error & Record<string, unknown>) => error,
        );
        return lastError !== undefined;
      },
      { timeoutMs: 5_000, what: 'the edited rule to refuse the message' },
    );
    expect(lastError).toMatchObject({ responseCode: 554, response: '554 edited' });

    // A broken edit is reported and the last good rules stay in force.
    await writeFile(rulesFile, '[{"match": "late@example.test", "code": ');
    await eventually(() => errors.length > 0, { timeoutMs: 5_000, what: 'the broken rules file reported' });
    expect(errors[0]!.message).toMatch(/not JSON/);
    await expect(send()).rejects.toMatchObject({ responseCode: 554 });

    // Deleting the file withdraws its rules.
    await rm(rulesFile);
    await eventually(async () => (await send().then(() => true, () => false)) === true, { timeoutMs: 5_000, what: 'the message accepted once the file is gone' });
  }, 20_000);

  it('refuses to start on an invalid rules file', async () => {
    const rulesFile = join(work, 'rules.json');
    await writeFile(rulesFile, JSON.stringify([{ match: 'nobody', code: 'hang', stage: 'rcpt' }]));

    await expect(startCaptureSink({ rulesFile })).rejects.toThrow(/rules\[0\]\.match[\s\S]*rules\[0\]\.stage/);
  });

  it("never answers a 'hang' message: the client times out and nothing is captured", async () => {
    const sink = await start({ rules: [{ match: 'hang@example.test', code: 'hang' }] });

    const error = await failure(
      transport(sink, { socketTimeout: 300 }).sendMail({ from: 's@herald.test', to: 'hang@example.test', text: 'x' }),
    );

    expect(error).toMatchObject({ code: 'ETIMEDOUT', command: 'CONN', timeoutType: 'SOCKET_TIMEOUT' });
    expect(error.responseCode).toBeUndefined();
    expect(sink.count()).toBe(0);
  });

  it('counts a Message-ID sent twice', async () => {
    const sink = await start();
    const client = transport(sink);
    const mail = { from: 's@herald.test', to: 'r@example.test', messageId: '<twice@herald.test>', text: 'x' };

    await client.sendMail(mail);
    await client.sendMail(mail);
    await client.sendMail({ ...mail, messageId: '<once@herald.test>' });

    expect(sink.messageIdCounts()).toEqual(
      new Map([
        ['<twice@herald.test>', 2],
        ['<once@herald.test>', 1],
      ]),
    );
  });

  it('answers 552 for a message over maxSize', async () => {
    const sink = await start({ maxSize: 10_000 });
    const { socket, expect: reply } = await rawClient(sink.port);
    await reply(/^220 /m);
    socket.write('EHLO client.test\r\n');
    expect(await reply(/^250 /m)).toMatch(/SIZE 10000/);
    socket.write('MAIL FROM:<s@herald.test>\r\nRCPT TO:<r@example.test>\r\nDATA\r\n');
    await reply(/^354 /m);
    socket.write(`Subject: big\r\n\r\n${'x'.repeat(20_000)}\r\n.\r\n`);

    expect(await reply(/^552 /m)).toMatch(/^552 /m);
    expect(sink.count()).toBe(0);
    socket.destroy();
  });

  it('captures 200 messages sent over a pooled transport', async () => {
    const dir = join(work, 'mail');
    const sink = await start({ dir });
    const pool = transport(sink, { pool: true, maxConnections: 5, maxMessages: Number.POSITIVE_INFINITY });

    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        pool.sendMail({ from: 's@herald.test', to: `r${i}@example.test`, messageId: `<m${i}@herald.test>`, text: `#${i}` }),
      ),
    );

    expect(sink.count()).toBe(200);
    expect(sink.messages().map((message) => message.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(new Set(sink.messageIdCounts().keys())).toEqual(new Set(Array.from({ length: 200 }, (_, i) => `<m${i}@herald.test>`)));
    expect(await readdir(dir)).toHaveLength(200);
  });

  it('closes within 2 s with an idle connection and a hung message still open', async () => {
    const sink = await start({ rules: [{ match: 'hang@example.test', code: 'hang' }] });
    const idle = await rawClient(sink.port);
    await idle.expect(/^220 /m);
    const hung = await rawClient(sink.port);
    await hung.expect(/^220 /m);
    hung.socket.write('EHLO client.test\r\n');
    await hung.expect(/^250 /m);
    hung.socket.write('MAIL FROM:<s@herald.test>\r\nRCPT TO:<hang@example.test>\r\nDATA\r\n');
    await hung.expect(/^354 /m);
    hung.socket.write('Subject: hang\r\n\r\nbody\r\n.\r\n');
    const closedByServer = Promise.all(
      [idle.socket, hung.socket].map((socket) => new Promise((resolve) => socket.once('close', resolve))),
    );

    const started = Date.now();
    await sink.close();

    expect(Date.now() - started).toBeLessThan(2_000);
    await closedByServer;
    expect(sink.count()).toBe(0);
    await expect(sink.close()).resolves.toBeUndefined();
  });
});
