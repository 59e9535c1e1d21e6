// Opens and clicks recorded from the token alone, on PGlite and PostgreSQL: no statement on the
// control-plane store per hit (a click's target is read once per link and kept), still recorded
// and redirected once the ledger rows are gone; expired tokens, links out of range and forged
// tokens answer 404 and record nothing; a token rendered before tokens carried the Message-ID
// still goes through the ledger.
import { signToken, type TrackingPayload, verifyToken } from '@herald/channels';
import { describeEachStore, eventually, hit, messageLinks } from '@herald/testing';
import { type EngineHarness, startEngineHarness, TRACKING_SECRET } from './engine-harness.js';

const HTML = '<p>Hi <a href="https://shop.example/a">a</a> <a href="https://shop.example/b">b</a></p>';
const DAY_MS = 24 * 3600_000;

describeEachStore('tracking without the control-plane store', (kind) => {
  let h: EngineHarness;
  beforeAll(async () => {
    h = await startEngineHarness(kind);
  });
  afterAll(async () => h?.close());

  /** Sends `count` messages with two links; returns the delivery and each message's links, Message-ID and token payload. */
  async function sent(count: number, prefix: string) {
    const id = await h.deliveryFor(count, { content: { from: 'news@shop.example', subject: 'Hi', html: HTML } }, prefix);
    await h.confirmAndOk(id);
    await h.waitForState(id, 'finished');
    const messages = h.sink
      .messages()
      .filter((m) => m.to[0]!.startsWith(prefix))
      .map((m) => {
        const links = messageLinks(m.file!);
        const token = links.click.slice(links.click.lastIndexOf('/') + 1);
        return { ...links, payload: verifyToken(TRACKING_SECRET, token)! };
      });
    expect(messages).toHaveLength(count);
    return { id, messages };
  }

  const local = (url: string) => url.replace('http://herald.test', h.gateway.url);
  const url = (path: 't/o' | 't/c', payload: TrackingPayload) => `${h.gateway.url}/${path}/${signToken(TRACKING_SECRET, payload)}`;
  const eventsOf = (id: string, type: string) => h.events.filter((e) => e.deliveryId === id && e.type === type);
  const outboxRows = async (id: string) => {
    const [row] = await h.database.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM outbox_messages WHERE topic = 'herald.message-events' AND payload->>'deliveryId' = $1`,
      [id],
    );
    return row!.n;
  };

  /** Counts the statements on the control-plane store that read the ledger or the links, or write an event, while `work` runs. */
  async function trackingStatements(work: () => Promise<void>): Promise<number> {
    const db = h.database.db;
    const [query, transaction] = [db.query, db.transaction];
    let count = 0;
    const counted = (sql: string) => {
      if (/send_ledger|tracked_links|INSERT INTO outbox_messages/i.test(sql)) count++;
    };
    db.query = ((sql: string, params?: unknown[]) => {
      counted(sql);
      return query.call(db, sql, params);
    }) as typeof db.query;
    db.transaction = ((work: Parameters<typeof db.transaction>[0]) =>
      transaction.call(db, (tx) => {
        const countedTx = Object.create(tx) as typeof tx;
        countedTx.query = ((sql: string, params?: unknown[]) => {
          counted(sql);
          return tx.query(sql, params);
        }) as typeof tx.query;
        return work(countedTx);
      })) as typeof db.transaction;
    try {
      await work();
    } finally {
      db.query = query;
      db.transaction = transaction;
    }
    return count;
  }

  it('records opens and clicks on the bus with no statement on the store, and keeps doing so once the ledger rows are gone', async () => {
    const { id, messages } = await sent(4, 'tk-');
    const [ledgerRow] = await h.database.db.query<{ message_id: string }>('SELECT message_id FROM send_ledger WHERE delivery_id = $1 AND profile_id = $2', [
      id,
      messages[0]!.payload.profileId,
    ]);
    expect(messages[0]!.payload.messageId).toBe(ledgerRow!.message_id);
    const outboxBefore = await outboxRows(id);

    // The first click of each link reads its target once; every other hit touches nothing.
    const second = { ...messages[0]!.payload, link: 1 };
    const warm = await trackingStatements(async () => {
      expect((await hit(local(messages[0]!.click))).status).toBe(302);
      expect((await hit(url('t/c', second))).headers.get('location')).toBe('https://shop.example/b');
    });
    expect(warm).toBe(2);
    const hot = await trackingStatements(async () => {
      for (const m of messages) {
        expect((await hit(local(m.pixel))).status).toBe(200);
        const click = await hit(local(m.click));
        expect(click.status).toBe(302);
        expect(click.headers.get('location')).toBe('https://shop.example/a');
      }
    });
    expect(hot).toBe(0);

    // The ledger rows of the run are deleted (retention): the links still record and redirect.
    await h.database.db.query('DELETE FROM send_ledger WHERE delivery_id = $1', [id]);
    expect((await hit(local(messages[1]!.pixel))).status).toBe(200);
    const late = await hit(url('t/c', { ...messages[1]!.payload, link: 1 }));
    expect(late.status).toBe(302);
    expect(late.headers.get('location')).toBe('https://shop.example/b');

    await eventually(() => eventsOf(id, 'opened').length === 5 && eventsOf(id, 'clicked').length === 7, { what: 'the opens and clicks on the bus' });
    const opened = eventsOf(id, 'opened').find((e) => e.profileId === messages[0]!.payload.profileId)!;
    expect(opened).toMatchObject({ messageId: ledgerRow!.message_id, occurrence: 0, channel: 'email', machine: false });
    expect(eventsOf(id, 'clicked').filter((e) => e.url === 'https://shop.example/b')).toHaveLength(2);
    // Every hit its own event, none through the outbox.
    expect(new Set(h.events.filter((e) => e.deliveryId === id).map((e) => e.eventId)).size).toBe(h.events.filter((e) => e.deliveryId === id).length);
    expect(await outboxRows(id)).toBe(outboxBefore);
    const recorded = await h.gateway.metrics.registry.getSingleMetricAsString('herald_tracking_events_total');
    expect(recorded).toMatch(/herald_tracking_events_total\{type="opened",path="bus"\} [1-9]/);
  });

  it('unsubscribes with a current token once the ledger rows are gone, however old the link', async () => {
    const { id, messages } = await sent(2, 'tu-');
    await h.database.db.query('DELETE FROM send_ledger WHERE delivery_id = $1', [id]);
    const { payload } = messages[0]!;
    // Issued 400 days ago: unsubscribe links never expire.
    const old = { ...payload, kind: 'unsubscribe' as const, link: undefined, issuedAt: Math.floor((h.clock.now().getTime() - 400 * DAY_MS) / 1000) };
    const answer = await fetch(`${h.gateway.url}/u/${signToken(TRACKING_SECRET, old)}`, { method: 'POST', body: 'List-Unsubscribe=One-Click' });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ unsubscribed: true });
    expect((await h.api('GET', `/v1/profiles/${payload.profileId}`)).body.status).toBe('unsubscribed');
    await h.gateway.relay.drain();
    await eventually(() => eventsOf(id, 'unsubscribed').length === 1, { what: 'the unsubscribed event' });
    expect(eventsOf(id, 'unsubscribed')[0]).toMatchObject({ messageId: payload.messageId, profileId: payload.profileId, channel: 'email' });
  });

  it('answers 404 and records nothing for an expired token, a link out of range or an altered token', async () => {
    const { id, messages } = await sent(2, 'tx-');
    const { payload } = messages[0]!;
    const outboxBefore = await outboxRows(id);
    // A link index the content does not have, correctly signed.
    expect((await hit(url('t/c', { ...payload, link: 2 }))).status).toBe(404);
    // Altered: one character of the signature.
    const click = local(messages[0]!.click);
    expect((await hit(`${click.slice(0, -1)}${click.endsWith('A') ? 'B' : 'A'}`)).status).toBe(404);
    // Issued 181 days ago (TRACKING_LINK_TTL defaults to 180 days).
    const old = { ...payload, issuedAt: Math.floor((h.clock.now().getTime() - 181 * DAY_MS) / 1000) };
    expect((await hit(url('t/o', { ...old, kind: 'open', link: undefined }))).status).toBe(404);
    expect((await hit(url('t/c', old))).status).toBe(404);
    // ...while one issued 179 days ago still works.
    const recent = { ...payload, issuedAt: Math.floor((h.clock.now().getTime() - 179 * DAY_MS) / 1000) };
    expect((await hit(url('t/c', recent))).status).toBe(302);
    await eventually(() => eventsOf(id, 'clicked').length === 1, { what: 'the one valid click' });
    expect(eventsOf(id, 'opened')).toHaveLength(0);
    expect(await outboxRows(id)).toBe(outboxBefore);
  });

  it('resolves a token without the Message-ID (sent before tokens carried it) through the ledger, as before', async () => {
    const { id, messages } = await sent(2, 'to-');
    const { messageId: _messageId, issuedAt: _issuedAt, ...older } = messages[0]!.payload;
    const outboxBefore = await outboxRows(id);
    expect((await hit(url('t/o', { ...older, kind: 'open', link: undefined }))).status).toBe(200);
    const click = await hit(url('t/c', older));
    expect(click.status).toBe(302);
    expect(click.headers.get('location')).toBe('https://shop.example/a');
    expect(await outboxRows(id)).toBe(outboxBefore + 2);
    // Such a token needs its ledger row.
    await h.database.db.query('DELETE FROM send_ledger WHERE delivery_id = $1', [id]);
    expect((await hit(url('t/o', { ...older, kind: 'open', link: undefined }))).status).toBe(404);
    expect(await outboxRows(id)).toBe(outboxBefore + 2);
  });
});
