// The send engine against a real SMTP server on loopback: outcomes, retries, quarantine,
// the circuit breaker, pause/resume and a graceful restart, on PGlite and PostgreSQL.
import { createHash, createVerify, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  describeEachStore,
  eventually,
  freePort,
  readMessageText,
  type SmsProvider,
  startSmsProvider,
  startSmtpServer,
  startTestSink,
  type TestSmtpServer,
} from '@herald/testing';
import { TOPICS } from '@herald/contracts';
import { pino } from 'pino';
import { type EngineHarness, startEngineHarness } from './engine-harness.js';

describeEachStore('send engine', (kind) => {

  describe('happy path and bounces', () => {
    let h: EngineHarness;
    beforeAll(async () => {
      h = await startEngineHarness(kind, {
        rules: [
          // 10% greylisted once, 2% unknown users.
          { match: '/^r0-\\d*0@/', code: 451, message: '4.7.1 Try again later', times: 1 },
          { match: '/^r0-\\d*(17|63)@/', code: 550, message: '5.1.1 User unknown' },
        ],
      });
    });
    afterAll(async () => h?.close());

    it('sends every recipient once, personalized, retrying 451s and quarantining 550s', async () => {
      const id = await h.deliveryFor(1000, {}, 'r0-');
      await h.confirmAndOk(id);
      await h.waitForState(id, 'finished');
      const ledger = await h.ledger(id);
      expect(ledger).toEqual({ sent: 980, bounced: 20 });
      // Each accepted message arrived exactly once, with its own Message-ID.
      const counts = [...h.sink.messageIdCounts().values()];
      expect(counts.length).toBe(980);
      expect(counts.every((n) => n === 1)).toBe(true);
      // 451s were retried: 100 greylisted addresses took two attempts.
      const [retried] = await h.database.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM send_ledger WHERE delivery_id = $1 AND attempts = 2 AND status = 'sent'`,
        [id],
      );
      expect(retried!.n).toBe(100);
      // 550s bounced once and quarantined the profile; the rest of their batch went out.
      const bounced = await h.database.db.query<{ profile_id: string; last_code: number; attempts: number; status: string }>(
        `SELECT l.profile_id, l.last_code, l.attempts, p.status FROM send_ledger l JOIN profiles p ON p.id = l.profile_id
          WHERE l.delivery_id = $1 AND l.status = 'bounced'`,
        [id],
      );
      expect(bounced).toHaveLength(20);
      expect(bounced.every((b) => b.last_code === 550 && b.attempts === 1 && b.status === 'quarantined')).toBe(true);
      // A message event per outcome, each with a unique id.
      const events = await h.database.db.query<{ type: string; n: number }>(
        `SELECT payload->>'type' AS type, count(DISTINCT payload->>'eventId')::int AS n FROM outbox_messages
          WHERE topic = 'herald.message-events' AND payload->>'deliveryId' = $1 GROUP BY 1 ORDER BY 1`,
        [id],
      );
      expect(events).toEqual([
        { type: 'bounced', n: 20 },
        { type: 'delivered', n: 980 },
        { type: 'sent', n: 980 },
      ]);
      const audit = await h.api('GET', `/v1/deliveries/${id}/audit`);
      expect(audit.body.items.at(-1)).toMatchObject({ actor: 'system:engine', action: 'finish', fromState: 'sending', toState: 'finished' });
    });

    it('serves the tracked links of a sent message: pixel, click redirect, one-click unsubscribe', async () => {
      const id = await h.deliveryFor(3, {}, 'tr-');
      await h.confirmAndOk(id);
      await h.waitForState(id, 'finished');
      const message = h.sink.messages().find((m) => m.to.includes('tr-1@example.com'))!;
      const raw = readMessageText(message.file!);
      const local = (url: string) => url.replace('http://herald.test', h.gateway.url);
      const click = local(/http:\/\/herald\.test\/t\/c\/[\w.-]+/.exec(raw)![0]);
      const pixel = local(/http:\/\/herald\.test\/t\/o\/[\w.-]+/.exec(raw)![0]);
      const unsubscribe = local(/http:\/\/herald\.test\/u\/[\w.-]+/.exec(raw)![0]);

      const opened = await fetch(pixel, { headers: { 'user-agent': 'Mozilla/5.0 (compatible; Mimecast URL protection)' } });
      expect(opened.status).toBe(200);
      expect(opened.headers.get('content-type')).toBe('image/gif');
      const clicked = await fetch(click, { redirect: 'manual', headers: { 'user-agent': 'Mozilla/5.0' } });
      expect(clicked.status).toBe(302);
      expect(clicked.headers.get('location')).toBe('https://shop.example/sale');
      // A forged or altered token answers 404 and records nothing.
      // (One character of the signature changed: never to itself.)
      const forged = `${click.slice(0, -3)}${click.at(-3) === 'A' ? 'B' : 'A'}${click.slice(-2)}`;
      expect(forged).not.toBe(click);
      expect((await fetch(forged, { redirect: 'manual' })).status).toBe(404);
      expect((await fetch(`${h.gateway.url}/t/c/not-a-token`, { redirect: 'manual' })).status).toBe(404);
      // GET shows a page and changes nothing; POST unsubscribes (RFC 8058).
      const page = await fetch(unsubscribe);
      expect(await page.text()).toContain('<form method="post">');
      expect((await h.api('GET', '/v1/profiles/tr-000001')).body.status).toBe('active');
      const post = await fetch(unsubscribe, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
      expect(post.status).toBe(200);
      expect((await h.api('GET', '/v1/profiles/tr-000001')).body.status).toBe('unsubscribed');
      // Opens and clicks go straight onto the bus, the unsubscribe through the outbox: read them where both arrive.
      await h.gateway.relay.drain();
      const eventsOf = () =>
        h.events.filter((e) => e.deliveryId === id && e.type !== 'sent' && e.type !== 'delivered').map((e) => ({ type: e.type, machine: String(e.machine) }));
      await eventually(() => eventsOf().length >= 3, { what: 'the tracking events on the bus' });
      const events = eventsOf();
      // The scanner's pixel hit and the script's POST are flagged as machines; the browser's click is not.
      expect(events).toEqual([
        { type: 'opened', machine: 'true' },
        { type: 'clicked', machine: 'false' },
        { type: 'unsubscribed', machine: 'true' },
      ]);
    });

    it('never lets a personalization value add header lines', async () => {
      await h.api('POST', '/v1/profiles/import', {
        body: [{ id: 'inject', email: 'inject@example.com', attributes: { note: 'hi\r\nBcc: victim@example.com\r\nX-Evil: 1', batch: 'inject' } }],
      });
      const audience = await h.api('POST', '/v1/audiences', { body: { name: 'inject', profileIds: ['inject'] } });
      const created = await h.api('POST', '/v1/deliveries', {
        body: {
          name: 'Injection',
          channel: 'email',
          audienceId: audience.body.id,
          content: { from: 'news@shop.example', subject: 'Note: {{profile.attributes.note}}', text: 'Body {{profile.attributes.note}}' },
        },
      });
      const id = created.body.id;
      await h.api('POST', `/v1/deliveries/${id}/prepare`);
      await h.api('POST', `/v1/deliveries/${id}/approve`);
      await h.confirmAndOk(id);
      await h.waitForState(id, 'finished');
      const message = h.sink.messages().find((m) => m.to.includes('inject@example.com'))!;
      expect(message).toBeDefined();
      const raw = readFileSync(message.file!, 'utf8');
      const headerNames = raw
        .split('\r\n\r\n')[0]!
        .split('\r\n')
        .filter((line) => !/^\s/.test(line))
        .map((line) => line.slice(0, line.indexOf(':')).toLowerCase());
      expect(headerNames).not.toContain('bcc');
      expect(headerNames).not.toContain('x-evil');
      expect(message.to).toEqual(['inject@example.com']);
    });
  });

  describe('proofs and sms', () => {
    let h: EngineHarness;
    let provider: SmsProvider;
    const received: { to: string; text: string }[] = [];
    beforeAll(async () => {
      // A generic JSON batch SMS provider: accepts every number except those ending in 99.
      provider = await startSmsProvider((messages) => {
        received.push(...messages);
        return JSON.stringify({ results: messages.map((m) => (m.to.endsWith('99') ? { id: m.id, status: 'rejected', code: 550, error: 'unknown number' } : { id: m.id, status: 'accepted' })) });
      });
      h = await startEngineHarness(kind, { workerOverrides: { httpProviderUrl: provider.url } });
    });
    afterAll(async () => {
      await h?.close();
      await provider?.close();
    });

    it('sends a proof with a subject prefix, outside the ledger and the KPIs', async () => {
      const id = await h.deliveryFor(5, {}, 'pr-');
      const [before] = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox_messages WHERE topic = 'herald.message-events'`);
      const proof = await h.api('POST', `/v1/deliveries/${id}/proofs`, { body: { to: ['boss@example.com', 'legal@example.com'], profileId: 'pr-000003' } });
      expect(proof.status).toBe(202);
      await eventually(() => h.sink.count() >= 2, { timeoutMs: 30_000, what: 'the two proofs' });
      const messages = h.sink.messages();
      expect(messages.flatMap((m) => m.to).sort()).toEqual(['boss@example.com', 'legal@example.com']);
      const raw = readFileSync(messages[0]!.file!, 'utf8');
      expect(raw).toMatch(/^Subject: \[Proof\] Hello Name3$/m);
      expect((await h.api('GET', `/v1/deliveries/${id}`)).body.state).toBe('approved');
      expect(await h.ledger(id)).toEqual({ pending: 5 });
      const [after] = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox_messages WHERE topic = 'herald.message-events'`);
      expect(after!.n).toBe(before!.n);
      const invalid = await h.api('POST', `/v1/deliveries/${id}/proofs`, { body: { to: ['not an address'] } });
      expect(invalid.body.code).toBe('INVALID_INPUT');
    });

    it('sends sms through the HTTP provider, many recipients per request', async () => {
      const numbers = Array.from({ length: 30 }, (_, i) => ({ id: `sms-${i}`, phone: `+336120${String(10000 + i)}` }));
      numbers.push({ id: 'sms-bad', phone: '+33612345699' });
      await h.api('POST', '/v1/profiles/import', { body: numbers.map((n) => ({ ...n, firstName: 'Sam' })) });
      const audience = await h.api('POST', '/v1/audiences', { body: { name: 'sms', profileIds: numbers.map((n) => n.id) } });
      const created = await h.api('POST', '/v1/deliveries', {
        body: { name: 'Flash sale', channel: 'sms', audienceId: audience.body.id, content: { text: 'Hi {{profile.firstName}}, 20% off today' } },
      });
      const id = created.body.id;
      await h.api('POST', `/v1/deliveries/${id}/prepare`);
      await h.api('POST', `/v1/deliveries/${id}/approve`);
      await h.confirmAndOk(id);
      await h.waitForState(id, 'finished');
      expect(await h.ledger(id)).toEqual({ sent: 30, bounced: 1 });
      expect(received.filter((m) => m.text === 'Hi Sam, 20% off today')).toHaveLength(31);
    });
  });

  describe('delivery commands', () => {
    let h: EngineHarness;
    const logs: { msg: string; deliveryId?: string }[] = [];
    beforeAll(async () => {
      const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
      h = await startEngineHarness(kind, { engine: { logger } });
    });
    afterAll(async () => h?.close());

    it('skips a repeated command: the same DeliveryStarted published twice starts one planner and one send', async () => {
      const id = await h.deliveryFor(20, {}, 'dup-');
      await h.confirmAndOk(id);
      await h.waitForState(id, 'finished');
      const started = h.commands.find((m) => m.value.deliveryId === id && m.value.type === 'DeliveryStarted')!;
      // Published again, as a relay that died before marking it would.
      await h.bus.publish(TOPICS.deliveryCommands, [{ key: id, value: started.value }]);
      await eventually(async () => (await h.bus.lag(TOPICS.deliveryCommands, 'engine-planner')) === 0, { what: 'the engine to take the repeated command' });
      expect(logs.filter((l) => l.msg === 'planning run' && l.deliveryId === id)).toHaveLength(1);
      expect(logs.filter((l) => l.msg === 'repeated delivery command skipped' && l.deliveryId === id)).toHaveLength(1);
      expect(h.sink.messages().filter((m) => m.to[0]!.startsWith('dup-'))).toHaveLength(20);
      expect(await h.ledger(id)).toEqual({ sent: 20 });
    });
  });

  describe('pause, resume, restart', () => {
    let h: EngineHarness;
    beforeAll(async () => {
      h = await startEngineHarness(kind, { engine: { batchSize: 50 }, threads: 1 });
    });
    afterAll(async () => h?.close());

    it('pauses within a second and resumes without sending anyone twice', async () => {
      const id = await h.deliveryFor(3000, { throughput: { perHour: 3_600_000 } }, 'p0-');
      await h.confirmAndOk(id);
      await eventually(() => h.sink.count() >= 300, { timeoutMs: 30_000, what: '300 messages sent' });
      const paused = await h.api('POST', `/v1/deliveries/${id}/pause`);
      expect(paused.body.state).toBe('paused');
      const pausedAt = Date.now();
      // Within a second, nothing more leaves: once the engine has put the delivery down (nothing
      // queued or being sent, so nothing more can leave), the last transaction began at most a
      // second after the pause; and none begins while it stays paused (checked below).
      await h.waitUntilPutDown(id);
      const afterSecond = h.sink.count();
      expect(h.transactionsStartedAfter('p0-', pausedAt).lastMs).toBeLessThanOrEqual(1000);
      expect(afterSecond).toBeLessThan(3000);
      const resumedAt = Date.now();
      expect(h.sink.count()).toBe(afterSecond);
      await h.api('POST', `/v1/deliveries/${id}/resume`);
      await h.gateway.relay.drain();
      await h.waitForState(id, 'finished');
      const duringPause = h.sink.messages().filter((m) => m.to[0]!.startsWith('p0-') && Date.parse(m.startedAt) > pausedAt + 1000 && Date.parse(m.startedAt) < resumedAt);
      expect(duringPause).toHaveLength(0);
      expect(await h.ledger(id)).toEqual({ sent: 3000 });
      const counts = [...h.sink.messageIdCounts().values()];
      expect(counts.length).toBe(3000);
      expect(Math.max(...counts)).toBe(1);
    });

    it('stops the engine mid-send (SIGTERM) and a new one finishes: zero duplicates, zero lost', async () => {
      const before = h.sink.count();
      const id = await h.deliveryFor(3000, {}, 'g0-');
      await h.confirmAndOk(id);
      await eventually(() => h.sink.count() - before >= 600, { timeoutMs: 30_000, what: '600 messages sent' });
      await h.restartEngine();
      await h.waitForState(id, 'finished');
      expect(await h.ledger(id)).toEqual({ sent: 3000 });
      const mine = h.sink.messages().slice(before);
      expect(mine.length).toBe(3000);
      expect(new Set(mine.map((m) => m.messageId)).size).toBe(3000);
    });
  });

  describe('in doubt', () => {
    let h: EngineHarness;
    beforeAll(async () => {
      h = await startEngineHarness(kind, {
        rules: [{ match: '/^d0-(0|1)@/', code: 'hang' }],
        engine: { breaker: { firstWave: 1, hardBounceRate: 1, domain4xxRate: 1, minSample: 50 } },
      });
    });
    afterAll(async () => h?.close());

    it('shows a message whose DATA answer never came as in doubt, and does not retry it', async () => {
      const id = await h.deliveryFor(40, {}, 'd0-');
      await h.confirmAndOk(id);
      await h.waitForState(id, 'finished');
      expect(await h.ledger(id)).toEqual({ sent: 38, in_doubt: 2 });
      const doubts = await h.database.db.query<{ attempts: number; last_error: string }>(
        `SELECT attempts, last_error FROM send_ledger WHERE delivery_id = $1 AND status = 'in_doubt'`,
        [id],
      );
      expect(doubts.every((d) => d.attempts === 1 && /timeout/i.test(d.last_error))).toBe(true);
      const logs = await h.api('GET', `/v1/deliveries/${id}/logs?limit=1000`);
      expect(logs.body.items.filter((e: { status: string }) => e.status === 'in_doubt')).toHaveLength(2);
    });
  });

  describe('circuit breaker', () => {
    let h: EngineHarness;
    beforeAll(async () => {
      h = await startEngineHarness(kind, { rules: [{ match: '*@example.com', code: 421, message: '4.7.0 Too many connections, slow down' }] });
    });
    afterAll(async () => h?.close());

    it('pauses a delivery whose receiving domain answers 421 to everything', async () => {
      const id = await h.deliveryFor(2000, {}, 'b0-');
      await h.confirmAndOk(id);
      const paused = await h.waitForState(id, 'paused');
      expect(paused.stateReason).toMatch(/^CIRCUIT_BREAKER: example\.com answered 4xx to 100% of \d+ messages/);
      expect(h.sink.count()).toBe(0);
      const ledger = await h.ledger(id);
      expect(ledger.sent ?? 0).toBe(0);
      expect(ledger.bounced ?? 0).toBe(0);
    });
  });

  describe('SMTP authentication', () => {
    let server: TestSmtpServer;
    beforeAll(async () => {
      server = await startSmtpServer({ credentials: { user: 'herald', password: 's3cret p@ss' } });
    });
    afterAll(async () => server.close());

    it('logs in with the credentials of SMTP_URL', async () => {
      const h = await startEngineHarness(kind, { workerOverrides: { smtpUrl: server.urlWith('herald', 's3cret p@ss') } });
      try {
        const id = await h.deliveryFor(5, {}, 'au-');
        await h.confirmAndOk(id);
        await h.waitForState(id, 'finished');
        expect(await h.ledger(id)).toEqual({ sent: 5 });
        expect(server.accepted.filter((m) => m.user === 'herald')).toHaveLength(5);
      } finally {
        await h.close();
      }
    });

    it('pauses the send on a refused login, with the answer, and quarantines no one', async () => {
      const h = await startEngineHarness(kind, { workerOverrides: { smtpUrl: server.urlWith('herald', 'wrong') } });
      try {
        const id = await h.deliveryFor(300, {}, 'aw-');
        await h.confirmAndOk(id);
        const paused = await h.waitForState(id, 'paused');
        expect(paused.stateReason).toMatch(/^CIRCUIT_BREAKER: the SMTP server refused the session: 535 .*Authentication failed.* \(at AUTH PLAIN\)$/);
        const ledger = await h.ledger(id);
        expect(ledger.bounced ?? 0).toBe(0);
        expect(ledger.sent ?? 0).toBe(0);
        const [quarantined] = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM profiles WHERE id LIKE 'aw-%' AND status <> 'active'`);
        expect(quarantined!.n).toBe(0);
      } finally {
        await h.close();
      }
    });
  });

  describe('SMTP server unreachable', () => {
    it('pauses the send with the connection error, and bounces or quarantines no one', async () => {
      // A port that was free a moment ago: nothing answers there.
      const port = await freePort();
      const h = await startEngineHarness(kind, { workerOverrides: { smtpUrl: `smtp://127.0.0.1:${port}` } });
      try {
        const id = await h.deliveryFor(300, {}, 'nr-');
        await h.confirmAndOk(id);
        const paused = await h.waitForState(id, 'paused');
        expect(paused.stateReason).toMatch(new RegExp(`^CIRCUIT_BREAKER: the SMTP server did not answer 100% of \\d+ messages \\(last: .*ECONNREFUSED 127\\.0\\.0\\.1:${port} \\(at CONN\\)\\)$`));
        const ledger = await h.ledger(id);
        expect([ledger.bounced ?? 0, ledger.sent ?? 0]).toEqual([0, 0]);
        const [quarantined] = await h.database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM profiles WHERE id LIKE 'nr-%' AND status <> 'active'`);
        expect(quarantined!.n).toBe(0);
      } finally {
        await h.close();
      }
    });
  });

  describe('SMTP connections', () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    let h: EngineHarness;
    beforeAll(async () => {
      h = await startEngineHarness(kind, {
        threads: 1,
        workerOverrides: { dkim: { domainName: 'shop.example', keySelector: 'herald', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() } },
      });
    });
    afterAll(async () => h?.close());

    it('signs every message with DKIM, and the signature verifies against the public key', async () => {
      const id = await h.deliveryFor(6, {}, 'dk-');
      await h.confirmAndOk(id);
      await h.waitForState(id, 'finished');
      const messages = h.sink.messages().filter((m) => m.to[0]!.startsWith('dk-'));
      expect(messages).toHaveLength(6);
      for (const message of messages) expect(verifyDkim(readFileSync(message.file!, 'utf8'), publicKey)).toEqual({ d: 'shop.example', s: 'herald', body: true, signature: true });
      // The check itself fails on an altered message.
      const raw = readFileSync(messages[0]!.file!, 'utf8');
      expect(verifyDkim(raw.replace(/sale/, 'sole'), publicKey).body).toBe(false);
      expect(verifyDkim(raw.replace(/^Subject: Hello/m, 'Subject: Hallo'), publicKey).signature).toBe(false);
    });

    it('sends on new connections after the server dropped the idle ones, nothing failed or retried', async () => {
      const first = await h.deliveryFor(10, {}, 'cx1-');
      await h.confirmAndOk(first);
      await h.waitForState(first, 'finished');
      // The server goes away with every connection the engine keeps, and comes back on the same port.
      const port = h.sink.port;
      await h.sink.close();
      const again = await startTestSink({ port, files: true });
      try {
        const second = await h.deliveryFor(10, {}, 'cx2-');
        await h.confirmAndOk(second);
        await h.waitForState(second, 'finished');
        expect(await h.ledger(second)).toEqual({ sent: 10 });
        expect(again.messages()).toHaveLength(10);
        // Each went out at its first attempt: no message paid for a dead connection with a retry.
        const [attempts] = await h.database.db.query<{ max: number }>('SELECT max(attempts)::int AS max FROM send_ledger WHERE delivery_id = $1', [second]);
        expect(attempts!.max).toBe(1);
      } finally {
        await again.close();
      }
    });
  });
});

/**
 * Checks a message's DKIM-Signature (relaxed/relaxed, rsa-sha256) as a receiver would (RFC 6376
 * 3.4.2, 3.4.4, 3.7): the body hash, and the RSA signature over the signed headers.
 */
function verifyDkim(raw: string, publicKey: KeyObject): { d?: string; s?: string; body: boolean; signature: boolean } {
  const split = raw.indexOf('\r\n\r\n');
  const headerLines = raw.slice(0, split).split(/\r\n(?![ \t])/);
  const body = raw.slice(split + 4);
  const signatureHeader = headerLines.find((line) => /^dkim-signature:/i.test(line))!;
  const tags = Object.fromEntries(
    signatureHeader
      .slice(signatureHeader.indexOf(':') + 1)
      .split(';')
      .map((tag) => tag.trim())
      .filter(Boolean)
      .map((tag) => [tag.slice(0, tag.indexOf('=')), tag.slice(tag.indexOf('=') + 1).replace(/\s+/g, '')]),
  );
  expect(tags.c).toBe('relaxed/relaxed');
  expect(tags.a).toBe('rsa-sha256');
  const relaxedBody = `${body
    .split('\r\n')
    .map((line) => line.replace(/[ \t]+/g, ' ').replace(/ $/, ''))
    .join('\r\n')
    .replace(/(\r\n)*$/, '')}\r\n`;
  const bodyHash = createHash('sha256').update(relaxedBody).digest('base64');
  const relaxedHeader = (line: string) => {
    const colon = line.indexOf(':');
    return `${line.slice(0, colon).toLowerCase().trim()}:${line.slice(colon + 1).replace(/\r\n/g, '').replace(/[ \t]+/g, ' ').trim()}`;
  };
  // Each name in h= takes the last unused header of that name (bottom up).
  const used = new Set<number>();
  const signed = (tags.h as string).split(':').map((name) => {
    for (let i = headerLines.length - 1; i >= 0; i--) {
      if (!used.has(i) && headerLines[i]!.toLowerCase().startsWith(`${name.toLowerCase().trim()}:`)) {
        used.add(i);
        return `${relaxedHeader(headerLines[i]!)}\r\n`;
      }
    }
    return '';
  });
  // The signature header itself, with its b= value emptied (b= the tag, never bh=).
  const withoutSignature = relaxedHeader(signatureHeader).replace(/(;\s*b=)[^;]*/, '$1');
  const data = signed.join('') + withoutSignature;
  const signature = createVerify('RSA-SHA256').update(data).verify(publicKey, tags.b as string, 'base64');
  return { d: tags.d, s: tags.s, body: bodyHash === tags.bh, signature };
}